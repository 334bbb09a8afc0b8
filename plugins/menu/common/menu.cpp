#include "menu.h"

#include "menu_text.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <set>

namespace pipelined::plugins::menu {

using sdk::StageError;

namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

std::string trim(std::string_view s) {
  // ASCII blanks and the ideographic space U+3000 (E3 80 80) at both ends.
  auto starts_ideo = [&](std::string_view v) { return v.size() >= 3 && v.substr(0, 3) == "\xE3\x80\x80"; };
  auto ends_ideo = [&](std::string_view v) { return v.size() >= 3 && v.substr(v.size() - 3) == "\xE3\x80\x80"; };
  for (;;) {
    if (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    else if (starts_ideo(s)) s.remove_prefix(3);
    else break;
  }
  for (;;) {
    if (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    else if (ends_ideo(s)) s.remove_suffix(3);
    else break;
  }
  return std::string(s);
}

const json& require_array(const json& doc, const char* key) {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_array())
    throw StageError(PL_ERR_INVALID_INPUT, std::string("input has no '") + key + "' array");
  return doc[key];
}

// ---- schemas (docs/pipelines.md) ---------------------------------------------------------------

json strict_object(json properties) {
  json required = json::array();
  for (const auto& [k, v] : properties.items()) required.push_back(k);
  return {{"type", "object"}, {"additionalProperties", false}, {"required", required}, {"properties", properties}};
}
json array_of(json items) { return {{"type", "array"}, {"items", std::move(items)}}; }
const json kString = {{"type", "string"}};
const json kInteger = {{"type", "integer"}};

const json& categories_schema() {
  static const json schema = strict_object(
      {{"categories",
        array_of(strict_object({{"name", kString},
                                {"items", array_of(strict_object({{"line", kInteger}, {"name", kString}, {"price", kString}}))}}))}});
  return schema;
}
const json& translations_schema() {
  static const json schema =
      strict_object({{"translations", array_of(strict_object({{"id", kInteger}, {"translation", kString}}))}});
  return schema;
}
const json& descriptions_schema() {
  static const json schema =
      strict_object({{"descriptions", array_of(strict_object({{"id", kInteger}, {"description", kString}}))}});
  return schema;
}

constexpr const char* kCategorizeInstructions =
    "You structure restaurant menus read by OCR. The user message is a JSON document with the menu's lines, "
    "each with its line number. Each line is either a category header or a menu item (a dish or a drink, "
    "usually with a price). Return every menu item line exactly once, inside a category. A category's name is "
    "the header printed on the menu above the item, in the menu's language; items before any header get a "
    "short category name in the menu's language chosen from what they are. For each item give its line "
    "number, its name without the price, and the price as printed (empty string when there is none). Header "
    "lines are not items.";
constexpr const char* kTranslateInstructions =
    "You translate restaurant menu texts (dish names, drinks, menu category names) from Japanese or Chinese. "
    "The user message is a JSON document with the target language and the texts, each with an id. Return one "
    "translation per id: the name a restaurant in the target language would print on its menu.";
constexpr const char* kDescribeInstructions =
    "You write menu descriptions for travellers. The user message is a JSON document with the target language "
    "and menu items (original name, translation, category), each with an id. For every id write one or two "
    "sentences in the target language that describe the dish or drink, mentioning its translated name.";

// Lines a chat answer is about: every item of every category, shape-checked.
void validate_categories(const json& answer) {
  if (!answer.contains("categories") || !answer["categories"].is_array()) throw_malformed("menu_categories", "no categories array");
  for (const json& c : answer["categories"]) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string() || !c.contains("items") || !c["items"].is_array())
      throw_malformed("menu_categories", "category without name or items");
    for (const json& item : c["items"])
      if (!item.is_object() || !item.contains("line") || !item["line"].is_number_integer())
        throw_malformed("menu_categories", "item without an integer line");
  }
}

// id -> text of a keyed answer array (translations / descriptions); every expected id must be there.
std::map<long long, std::string> keyed_answer(const json& answer, const char* list, const char* field,
                                              const std::vector<long long>& expected, std::string_view what) {
  if (!answer.contains(list) || !answer[list].is_array()) throw_malformed(what, std::string("no ") + list + " array");
  std::map<long long, std::string> out;
  for (const json& e : answer[list]) {
    if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer() || !e.contains(field) || !e[field].is_string())
      throw_malformed(what, std::string("entry without id or ") + field);
    out.emplace(e["id"].get<long long>(), e[field].get<std::string>());
  }
  for (long long id : expected)
    if (!out.count(id)) throw_malformed(what, "no answer for id " + std::to_string(id));
  return out;
}

}  // namespace

// ---- text helpers ----------------------------------------------------------------------------

std::vector<std::string> clean_lines(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string line = trim(text.substr(start, end - start));
    std::string collapsed;
    collapsed.reserve(line.size());
    for (std::size_t i = 0; i < line.size(); ++i) {
      const unsigned char c = line[i];
      if (is_space(c)) {
        if (!collapsed.empty() && collapsed.back() != ' ') collapsed += ' ';
      } else if (c == '\\' && i + 1 < line.size() && line[i + 1] >= '0' && line[i + 1] <= '9') {
        collapsed += "\xC2\xA5";  // ¥
      } else {
        collapsed += static_cast<char>(c);
      }
    }
    if (!collapsed.empty()) out.push_back(menu_text::normalize_price(collapsed));
    start = end + 1;
  }
  return out;
}

bool looks_like_item(std::string_view line) { return menu_text::looks_like_item(line); }

std::pair<std::string, std::string> split_price(std::string_view raw) { return menu_text::split_price(raw); }

// ---- stage 1 ---------------------------------------------------------------------------------

std::vector<std::pair<int, int>> split_lines(const std::vector<bool>& blank) {
  std::vector<std::pair<int, int>> runs;
  const int rows = static_cast<int>(blank.size());
  for (int y = 0; y < rows;) {
    if (blank[y]) {
      ++y;
      continue;
    }
    const int begin = y;
    while (y < rows && !blank[y]) ++y;
    runs.emplace_back(begin, y);
  }
  // A run that is a piece of a line (one stroke of 二, an accent) is short next to a full line and
  // close to its neighbour; joined, the two are no taller than a line. Line height: the median run's.
  std::vector<int> heights;
  for (const auto& run : runs) heights.push_back(run.second - run.first);
  std::sort(heights.begin(), heights.end());
  const int line_height = heights.empty() ? 0 : heights[heights.size() / 2];
  std::vector<std::pair<int, int>> lines;
  for (const auto& run : runs) {
    if (!lines.empty()) {
      auto& last = lines.back();
      const int gap = run.first - last.second;
      const int shorter = std::min(last.second - last.first, run.second - run.first);
      if ((run.second - last.first) * 10 <= line_height * 13 && gap * 10 < line_height * 6 && shorter * 2 < line_height) {
        last.second = run.second;
        continue;
      }
    }
    lines.push_back(run);
  }
  return lines;
}

const sdk::Attachment& request_image(const sdk::Payload& input) {
  if (input.attachments.empty() || !input.attachments.front().data || input.attachments.front().data->empty())
    throw StageError(PL_ERR_INVALID_INPUT, "no menu image in the request (multipart file field)");
  return input.attachments.front();
}

sdk::Task<json> ocr_gemini(const sdk::Payload& input, const sdk::Context& ctx, const GeminiOcrConfig& config) {
  const sdk::Attachment& image = request_image(input);
  std::string type = sniff_image_type(*image.data);
  if (type.empty()) throw StageError(PL_ERR_INVALID_INPUT, "the uploaded file '" + image.name + "' is not a PNG, JPEG, WebP or GIF image");
  std::vector<InlineImage> images{{std::move(type), image.data}};
  const std::vector<std::string> texts = co_await gemini_ocr(ctx, config, std::move(images));
  co_return json{{"lines", clean_lines(texts.at(0))}};
}

// ---- stage 2 ---------------------------------------------------------------------------------

CategorizeConfig CategorizeConfig::from(const json& config, std::string_view plugin) {
  using C = CategorizeConfig;
  return read_config<C>(config, plugin,
                        {{"max_in_flight", &C::max_in_flight}, {"min_chunk_lines", &C::min_chunk_lines}, {"provider", &C::provider},
                         {"model", &C::model}, {"timeout_ms", &C::timeout_ms}});
}

std::vector<std::vector<std::size_t>> chunk_lines(const std::vector<std::string>& lines, std::size_t target) {
  target = std::max<std::size_t>(target, 1);
  std::vector<std::vector<std::size_t>> chunks;
  std::vector<std::size_t> current;
  std::optional<std::size_t> header;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const bool is_header = !looks_like_item(lines[i]);
    if (!current.empty()) {
      if (is_header && current.size() >= target) {
        chunks.push_back(std::move(current));
        current.clear();
      } else if (!is_header && current.size() >= target + target / 2) {
        // A long section: cut inside it and repeat its header so the next chunk knows the category.
        chunks.push_back(std::move(current));
        current.clear();
        if (header) current.push_back(*header);
      }
    }
    if (is_header) header = i;
    current.push_back(i);
  }
  if (!current.empty()) chunks.push_back(std::move(current));
  return chunks;
}

json merge_categories(const std::vector<std::string>& lines, const std::vector<json>& answers,
                      std::vector<std::string>* warnings) {
  struct Category {
    std::string name;
    std::vector<json> items;  // {"line", "name", "price"}
  };
  std::vector<Category> categories;
  std::map<std::string, std::size_t> by_name;
  std::map<std::size_t, std::size_t> category_of_line;  // item line -> category index
  auto warn = [&](std::string m) {
    if (warnings) warnings->push_back(std::move(m));
  };
  auto category_index = [&](const std::string& name) {
    auto [it, inserted] = by_name.emplace(name, categories.size());
    if (inserted) categories.push_back({name, {}});
    return it->second;
  };
  auto add_item = [&](std::size_t cat, std::size_t line, std::string name, std::string price) {
    if (name.empty()) std::tie(name, price) = split_price(lines[line]);
    categories[cat].items.push_back({{"line", line}, {"name", name}, {"price", price}});
    category_of_line[line] = cat;
  };

  for (const json& answer : answers) {
    for (const json& c : answer.value("categories", json::array())) {
      std::string name = trim(c.value("name", ""));
      if (name.empty()) name = "Other";
      for (const json& item : c.value("items", json::array())) {
        const long long line = item.value("line", -1LL);
        if (line < 0 || static_cast<std::size_t>(line) >= lines.size()) {
          warn("dropped item with line " + std::to_string(line) + " outside the menu's " + std::to_string(lines.size()) + " lines");
          continue;
        }
        if (category_of_line.count(static_cast<std::size_t>(line))) {
          warn("dropped a second occurrence of line " + std::to_string(line));
          continue;
        }
        add_item(category_index(name), static_cast<std::size_t>(line), trim(item.value("name", "")), trim(item.value("price", "")));
      }
    }
  }

  // Item lines no answer returned: next to the header above them, else the item above them.
  std::optional<std::size_t> last_header;
  std::optional<std::size_t> last_category;
  for (std::size_t line = 0; line < lines.size(); ++line) {
    if (auto it = category_of_line.find(line); it != category_of_line.end()) {
      last_category = it->second;
      continue;
    }
    if (!looks_like_item(lines[line])) {
      last_header = line;
      continue;
    }
    std::size_t cat;
    if (last_header && by_name.count(lines[*last_header])) cat = by_name[lines[*last_header]];
    else if (last_category) cat = *last_category;
    else cat = category_index(last_header ? lines[*last_header] : "Other");
    warn("line " + std::to_string(line) + " ('" + lines[line] + "') was not categorized; put into '" + categories[cat].name + "'");
    add_item(cat, line, "", "");
    last_category = cat;
  }

  for (auto& c : categories)
    std::sort(c.items.begin(), c.items.end(), [](const json& a, const json& b) { return a["line"].get<std::size_t>() < b["line"].get<std::size_t>(); });
  categories.erase(std::remove_if(categories.begin(), categories.end(), [](const Category& c) { return c.items.empty(); }),
                   categories.end());
  std::stable_sort(categories.begin(), categories.end(), [](const Category& a, const Category& b) {
    return a.items.front()["line"].get<std::size_t>() < b.items.front()["line"].get<std::size_t>();
  });
  json out = json::array();
  for (auto& c : categories) out.push_back({{"name", c.name}, {"items", std::move(c.items)}});
  return {{"categories", std::move(out)}};
}

sdk::Task<json> categorize(const json& input, const sdk::Context& ctx, const CategorizeConfig& config, Schedule schedule) {
  const json& raw = require_array(input, "lines");
  std::vector<std::string> lines;
  for (const json& l : raw) {
    if (!l.is_string()) throw StageError(PL_ERR_INVALID_INPUT, "'lines' must hold strings");
    lines.push_back(l.get<std::string>());
  }
  if (lines.empty()) co_return json{{"categories", json::array()}};

  std::vector<std::vector<std::size_t>> chunks;
  if (schedule == Schedule::Serial) {
    chunks.emplace_back(lines.size());
    for (std::size_t i = 0; i < lines.size(); ++i) chunks[0][i] = i;
  } else {
    const std::size_t target = std::max(config.min_chunk_lines, (lines.size() + config.max_in_flight - 1) / config.max_in_flight);
    chunks = chunk_lines(lines, target);
  }

  std::vector<json> answers(chunks.size());
  co_await run_requests(
      ctx, chunks.size(), schedule,
      [&](std::size_t i) {
        json user_lines = json::array();
        for (std::size_t line : chunks[i]) user_lines.push_back({{"line", line}, {"text", lines[line]}});
        ChatTask task{config.provider, config.model, kCategorizeInstructions,
                      {{"task", "menu_categories"}, {"lines", std::move(user_lines)}}, "menu_categories", categories_schema()};
        return with_timeout(chat_request(task), config.timeout_ms);
      },
      [&](std::size_t i, const sdk::HttpResponse& r) {
        json answer = chat_result(r, "menu_categories");
        validate_categories(answer);
        // Only lines of this chunk count for this chunk.
        const std::set<std::size_t> mine(chunks[i].begin(), chunks[i].end());
        for (json& c : answer["categories"]) {
          json kept = json::array();
          for (json& item : c["items"])
            if (mine.count(item["line"].get<std::size_t>())) kept.push_back(std::move(item));
          c["items"] = std::move(kept);
        }
        answers[i] = std::move(answer);
      });

  std::vector<std::string> warnings;
  json merged = merge_categories(lines, answers, &warnings);
  for (const auto& w : warnings) ctx.log(PL_LOG_WARN, w);
  co_return merged;
}

// ---- stage 3 ---------------------------------------------------------------------------------

TranslateConfig TranslateConfig::from(const json& config, std::string_view plugin) {
  using C = TranslateConfig;
  C c = read_config<C>(config, plugin,
                       {{"provider", &C::provider}, {"fallback_provider", &C::fallback_provider},
                        {"fallback_model", &C::fallback_model}, {"target", &C::target}, {"timeout_ms", &C::timeout_ms}});
  if (c.provider.empty() && c.fallback_provider.empty())
    throw std::invalid_argument(std::string(plugin) + ": needs 'provider' or 'fallback_provider'");
  return c;
}

sdk::Task<json> translate(const json& input, const sdk::Context& ctx, const TranslateConfig& config, Schedule schedule) {
  const json& categories = require_array(input, "categories");
  // Per category: its name, then its items' names.
  std::vector<std::vector<std::string>> texts;
  for (const json& c : categories) {
    std::vector<std::string> t{c.value("name", "")};
    for (const json& item : c.value("items", json::array())) t.push_back(item.value("name", ""));
    texts.push_back(std::move(t));
  }
  std::vector<std::vector<std::string>> translated(texts.size());
  std::vector<std::size_t> failed;  // categories Google Translate did not do
  // Each item goes out as soon as its category is translated (for progress: server-sent events);
  // its id is its position in the whole menu, as in describe's items.
  std::vector<std::size_t> first_id(texts.size(), 0);
  for (std::size_t i = 1; i < texts.size(); ++i) first_id[i] = first_id[i - 1] + texts[i - 1].size() - 1;
  auto emit_category = [&](std::size_t i) {
    const json& c = categories[i];
    const json items = c.value("items", json::array());
    for (std::size_t k = 0; k < items.size(); ++k) {
      sdk::Payload emitted;
      emitted.json = {{"id", first_id[i] + k},
                      {"category_index", i},
                      {"item_index", k},
                      {"category", c.value("name", "")},
                      {"category_translation", translated[i][0]},
                      {"original", items[k].value("name", "")},
                      {"translation", translated[i][k + 1]},
                      {"price", items[k].value("price", "")}};
      ctx.emit(emitted);
    }
  };

  if (!config.provider.empty()) {
    std::vector<std::string> errors(texts.size());
    co_await run_requests(
        ctx, texts.size(), schedule,
        [&](std::size_t i) { return with_timeout(translate_request(config.provider, texts[i], config.target), config.timeout_ms); },
        [&](std::size_t i, const sdk::HttpResponse& r) {
          try {
            translated[i] = translate_result(r, texts[i].size());
            emit_category(i);
          } catch (const StageError& e) {
            errors[i] = std::string(e.error_class()) + ": " + e.what();
          }
        },
        /*malformed_retries=*/0);
    for (std::size_t i = 0; i < texts.size(); ++i)
      if (!errors[i].empty()) {
        failed.push_back(i);
        ctx.log(PL_LOG_WARN, "Google Translate failed for category " + std::to_string(i) + " (" + errors[i] +
                                 (config.fallback_provider.empty() ? ")" : "); using the chat fallback"));
        if (config.fallback_provider.empty()) throw StageError(PL_ERR_UPSTREAM, "Google Translate failed: " + errors[i]);
      }
  } else {
    for (std::size_t i = 0; i < texts.size(); ++i) failed.push_back(i);
  }

  co_await run_requests(
      ctx, failed.size(), schedule,
      [&](std::size_t k) {
        const auto& t = texts[failed[k]];
        json list = json::array();
        for (std::size_t id = 0; id < t.size(); ++id) list.push_back({{"id", id}, {"text", t[id]}});
        ChatTask task{config.fallback_provider, config.fallback_model, kTranslateInstructions,
                      {{"task", "menu_translations"}, {"target", config.target}, {"texts", std::move(list)}},
                      "menu_translations", translations_schema()};
        return with_timeout(chat_request(task), config.timeout_ms);
      },
      [&](std::size_t k, const sdk::HttpResponse& r) {
        const std::size_t i = failed[k];
        std::vector<long long> ids(texts[i].size());
        for (std::size_t id = 0; id < ids.size(); ++id) ids[id] = static_cast<long long>(id);
        auto answer = keyed_answer(chat_result(r, "menu_translations"), "translations", "translation", ids, "menu_translations");
        translated[i].clear();
        for (long long id : ids) translated[i].push_back(answer[id]);
        emit_category(i);
      });

  json out = json::array();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const json& c = categories[i];
    json items = json::array();
    std::size_t k = 1;
    for (const json& item : c.value("items", json::array())) {
      items.push_back({{"line", item.value("line", -1)},
                       {"original", item.value("name", "")},
                       {"price", item.value("price", "")},
                       {"translation", translated[i][k++]}});
    }
    out.push_back({{"name", c.value("name", "")}, {"translation", translated[i][0]}, {"items", std::move(items)}});
  }
  co_return json{{"categories", std::move(out)}};
}

// ---- stage 4 ---------------------------------------------------------------------------------

DescribeConfig DescribeConfig::from(const json& config, std::string_view plugin) {
  using C = DescribeConfig;
  return read_config<C>(config, plugin,
                        {{"language", &C::language}, {"chunk_size", &C::chunk_size}, {"max_in_flight", &C::max_in_flight},
                         {"provider", &C::provider}, {"model", &C::model}, {"timeout_ms", &C::timeout_ms}});
}

std::size_t describe_chunk_size(std::size_t items, const DescribeConfig& config, Schedule schedule) {
  if (schedule == Schedule::Serial) return config.chunk_size;
  // As many chunks as the provider takes at once, so they all run in one round.
  return std::max<std::size_t>(1, (items + config.max_in_flight - 1) / config.max_in_flight);
}

sdk::Task<json> describe(const json& input, const sdk::Context& ctx, const DescribeConfig& config, Schedule schedule) {
  require_array(input, "categories");
  json out = input;
  json& categories = out["categories"];
  struct Ref {
    std::size_t category, item;
  };
  std::vector<Ref> refs;  // id -> position
  for (std::size_t c = 0; c < categories.size(); ++c)
    for (std::size_t i = 0; i < categories[c].value("items", json::array()).size(); ++i) refs.push_back({c, i});

  const std::size_t size = describe_chunk_size(refs.size(), config, schedule);
  const std::size_t chunks = (refs.size() + size - 1) / size;
  auto chunk_ids = [&](std::size_t k) {
    std::vector<long long> ids;
    for (std::size_t id = k * size; id < std::min(refs.size(), (k + 1) * size); ++id) ids.push_back(static_cast<long long>(id));
    return ids;
  };
  co_await run_requests(
      ctx, chunks, schedule,
      [&](std::size_t k) {
        json items = json::array();
        for (long long id : chunk_ids(k)) {
          const json& c = categories[refs[id].category];
          const json& item = c["items"][refs[id].item];
          items.push_back({{"id", id},
                           {"original", item.value("original", "")},
                           {"translation", item.value("translation", "")},
                           {"category", c.value("translation", c.value("name", ""))}});
        }
        ChatTask task{config.provider, config.model, kDescribeInstructions,
                      {{"task", "menu_descriptions"}, {"language", config.language}, {"items", std::move(items)}},
                      "menu_descriptions", descriptions_schema()};
        return with_timeout(chat_request(task), config.timeout_ms);
      },
      [&](std::size_t k, const sdk::HttpResponse& r) {
        const auto ids = chunk_ids(k);
        auto answer = keyed_answer(chat_result(r, "menu_descriptions"), "descriptions", "description", ids, "menu_descriptions");
        for (long long id : ids) {
          json& c = categories[refs[id].category];
          json& item = c["items"][refs[id].item];
          item["description"] = answer[id];
          sdk::Payload emitted;
          emitted.json = {{"id", id},
                          {"category_index", refs[id].category},
                          {"item_index", refs[id].item},
                          {"category", c.value("name", "")},
                          {"category_translation", c.value("translation", "")},
                          {"original", item.value("original", "")},
                          {"translation", item.value("translation", "")},
                          {"price", item.value("price", "")},
                          {"description", item["description"]}};
          ctx.emit(emitted);
        }
      });
  co_return out;
}

// ---- stage 5 ---------------------------------------------------------------------------------

ImagesConfig ImagesConfig::from(const json& config, std::string_view plugin) {
  using C = ImagesConfig;
  return read_config<C>(config, plugin,
                        {{"size", &C::size}, {"provider", &C::provider}, {"model", &C::model}, {"timeout_ms", &C::timeout_ms}});
}

json assemble_categories(const std::vector<json>& items) {
  std::vector<const json*> sorted;
  for (const json& item : items) {
    if (!item.contains("category_index") || !item["category_index"].is_number_integer() || !item.contains("item_index") ||
        !item["item_index"].is_number_integer())
      throw StageError(PL_ERR_INVALID_INPUT, "an input item has no category_index / item_index");
    sorted.push_back(&item);
  }
  std::stable_sort(sorted.begin(), sorted.end(), [](const json* a, const json* b) {
    return std::pair((*a)["category_index"].get<long long>(), (*a)["item_index"].get<long long>()) <
           std::pair((*b)["category_index"].get<long long>(), (*b)["item_index"].get<long long>());
  });
  json categories = json::array();
  long long current = -1;
  for (const json* item : sorted) {
    if ((*item)["category_index"].get<long long>() != current) {
      current = (*item)["category_index"].get<long long>();
      categories.push_back({{"name", item->value("category", "")},
                            {"translation", item->value("category_translation", "")},
                            {"items", json::array()}});
    }
    json out = {{"original", item->value("original", "")},
                {"translation", item->value("translation", "")},
                {"price", item->value("price", "")},
                {"description", item->value("description", "")}};
    for (const char* key : {"image_url", "image_error"})
      if (item->contains(key)) out[key] = (*item)[key];
    categories.back()["items"].push_back(std::move(out));
  }
  return {{"categories", std::move(categories)}};
}

sdk::Task<json> images(const sdk::Context& ctx, const ImagesConfig& config, Schedule schedule) {
  std::vector<json> items;
  // Copies of the submitted items for the handler, which emits each with its image as it is done
  // (progress); it cannot read `items`, which grows meanwhile on another thread.
  std::mutex submitted_mu;
  std::map<std::size_t, json> submitted;
  auto make = [&](std::size_t i, const json& item) {
    {
      std::lock_guard lock(submitted_mu);
      submitted[i] = item;
    }
    std::string description = item.value("description", "");
    if (description.size() > 400) description.resize(400);  // bytes; the model does not mind a cut character
    std::string prompt = "A realistic, appetising photo of " + item.value("translation", "") + " (" +
                         item.value("original", "") + ")" + (description.empty() ? "" : ", " + description);
    return with_timeout(image_request(config.provider, config.model, prompt, config.size), config.timeout_ms);
  };
  // Written by the handler only (never `items`, which grows meanwhile), read after the last response.
  std::map<std::size_t, std::pair<std::string, std::string>> results;  // index -> image_url, image_error
  auto handle = [&](std::size_t i, const sdk::HttpResponse& r) {
    try {
      results[i].first = image_result(r);
    } catch (const StageError& e) {
      results[i].second = std::string(e.error_class()) + ": " + e.what();
      ctx.log(PL_LOG_WARN, "item " + std::to_string(i) + ": " + e.what());
    }
    sdk::Payload emitted;
    {
      std::lock_guard lock(submitted_mu);
      emitted.json = std::move(submitted[i]);
      submitted.erase(i);
    }
    if (results[i].second.empty()) emitted.json["image_url"] = results[i].first;
    else emitted.json["image_error"] = results[i].second;
    ctx.emit(emitted);
  };

  if (schedule == Schedule::Serial) {
    for (;;) {
      std::optional<sdk::Payload> item = co_await ctx.next_item_async();
      if (!item) break;
      items.push_back(std::move(item->json));
    }
    co_await run_requests(ctx, items.size(), Schedule::Serial, [&](std::size_t i) { return make(i, items[i]); }, handle, 0);
  } else {
    sdk::RequestSet set(ctx, handle);
    for (;;) {
      std::optional<sdk::Payload> item = co_await ctx.next_item_async();
      if (!item) break;
      items.push_back(std::move(item->json));
      set.submit(items.size() - 1, make(items.size() - 1, items.back()));
    }
    co_await set.finished();
  }
  for (auto& [i, result] : results) {
    if (result.second.empty()) items[i]["image_url"] = result.first;
    else items[i]["image_error"] = result.second;
  }
  co_return assemble_categories(items);
}

}  // namespace pipelined::plugins::menu

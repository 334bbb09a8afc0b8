#include "medicine.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

namespace pipelined::plugins::medicine {

using sdk::StageError;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Lowercase ASCII words (letters, digits, '-', '.' inside numbers) and runs of non-ASCII bytes.
std::vector<std::string> tokens(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  bool non_ascii = false;
  auto flush = [&] {
    while (!current.empty() && (current.back() == '-' || current.back() == '.')) current.pop_back();
    if (!current.empty()) out.push_back(current);
    current.clear();
  };
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool word = std::isalnum(c) || ((c == '-' || c == '.') && !current.empty() && !non_ascii);
    if (c >= 0x80) {
      if (!non_ascii) flush();
      non_ascii = true;
      current += ch;
    } else if (word) {
      if (non_ascii) flush();
      non_ascii = false;
      current += static_cast<char>(std::tolower(c));
    } else {
      flush();
      non_ascii = false;
    }
  }
  flush();
  return out;
}

bool is_number(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; });
}

const std::set<std::string>& units() {
  static const std::set<std::string> u = {"mg", "mcg", "g", "ml", "iu", "meq"};
  return u;
}

const std::set<std::string>& filler_words() {
  static const std::set<std::string> f = {
      "tablet", "tablets", "capsule", "capsules", "coated", "film-coated", "film", "for", "oral", "use", "the", "and",
      "with", "relief", "pain", "reliever", "fever", "reducer", "hour", "allergy", "imprint", "chewable", "softgels",
      "caplets", "each", "contains", "per", "dose", "only", "not", "take", "directions", "warning", "tabs", "tab"};
  return f;
}

// "200 mg" from "200 mg", "200mg"; the first part of a combination strength ("875 mg/125 mg").
std::string normal_strength(std::string_view strength) {
  auto t = tokens(strength.substr(0, strength.find('/')));
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (is_number(t[i]) && i + 1 < t.size() && units().count(t[i + 1])) return t[i] + " " + t[i + 1];
    for (const auto& u : units())
      if (t[i].size() > u.size() && t[i].compare(t[i].size() - u.size(), u.size(), u) == 0 &&
          is_number(std::string_view(t[i]).substr(0, t[i].size() - u.size())))
        return t[i].substr(0, t[i].size() - u.size()) + " " + u;
  }
  return "";
}


struct Sqlite {
  sqlite3* db = nullptr;
  ~Sqlite() { sqlite3_close(db); }
};

void open_database(const std::string& path, Sqlite& handle) {
  if (sqlite3_open_v2(path.c_str(), &handle.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
    throw std::runtime_error(path + ": cannot open the drug database (" + (handle.db ? sqlite3_errmsg(handle.db) : "out of memory") +
                             "); build it with scripts/make-drug-db (the build does it too)");
  sqlite3_busy_timeout(handle.db, 1000);
}

}  // namespace

// ---- drugs -----------------------------------------------------------------------------------

DrugsConfig DrugsConfig::from(const json& config, std::string_view plugin) {
  using C = DrugsConfig;
  return read_config<C>(config, plugin, {{"database", &C::database}, {"limit", &C::limit}});
}

void check_database(const DrugsConfig& config) {
  Sqlite handle;
  open_database(config.database, handle);
  if (sqlite3_exec(handle.db, "SELECT id FROM drugs LIMIT 1", nullptr, nullptr, nullptr) != SQLITE_OK)
    throw std::runtime_error(config.database + ": not a drug database (" + sqlite3_errmsg(handle.db) +
                             "); rebuild it with scripts/make-drug-db");
}

json query_drugs(const DrugsConfig& config) {
  Sqlite handle;
  try {
    open_database(config.database, handle);
  } catch (const std::exception& e) {
    throw StageError(PL_ERR_INTERNAL, e.what());
  }
  static constexpr const char* kSql =
      "SELECT id, brand, generic, ingredients, strength, form, imprint, shape, colour, manufacturer "
      "FROM drugs ORDER BY id LIMIT ?";
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(handle.db, kSql, -1, &raw, nullptr) != SQLITE_OK)
    throw StageError(PL_ERR_INTERNAL, config.database + ": " + sqlite3_errmsg(handle.db));
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  sqlite3_bind_int64(stmt.get(), 1, static_cast<sqlite3_int64>(config.limit));
  static const char* kColumns[] = {"brand", "generic", "ingredients", "strength", "form", "imprint", "shape", "colour", "manufacturer"};
  json drugs = json::array();
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    json d = {{"id", sqlite3_column_int64(stmt.get(), 0)}};
    for (int i = 0; i < 9; ++i) {
      const unsigned char* text = sqlite3_column_text(stmt.get(), i + 1);
      d[kColumns[i]] = text ? reinterpret_cast<const char*>(text) : "";
    }
    drugs.push_back(std::move(d));
  }
  if (rc != SQLITE_DONE) throw StageError(PL_ERR_INTERNAL, config.database + ": " + sqlite3_errmsg(handle.db));
  return {{"drugs", std::move(drugs)}};
}

DrugsStage::DrugsStage(const json& config, std::string_view plugin) : config_(DrugsConfig::from(config, plugin)) {
  check_database(config_);
}

sdk::Payload DrugsStage::run(const sdk::Payload& /*input*/, sdk::Context& ctx) {
  ctx.throw_if_cancelled();
  return {query_drugs(config_), {}};
}

// ---- ocr -------------------------------------------------------------------------------------

std::vector<std::string> extract_keywords(std::string_view text) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](std::string k) {
    if (!k.empty() && seen.insert(k).second) out.push_back(std::move(k));
  };
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const std::string l = lower(trim(line));
    if (l.rfind("imprint", 0) == 0) {
      // "Imprint: ADV 200" -> the imprint as one keyword.
      std::string rest = trim(std::string_view(l).substr(7));
      if (!rest.empty() && rest.front() == ':') rest = trim(std::string_view(rest).substr(1));
      add(rest);
      continue;
    }
    const auto t = tokens(line);
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (is_number(t[i]) && i + 1 < t.size() && units().count(t[i + 1])) {
        add(t[i] + " " + t[i + 1]);
        ++i;
        continue;
      }
      std::string s = normal_strength(t[i]);
      if (!s.empty()) {
        add(s);
        continue;
      }
      const bool has_letter = std::any_of(t[i].begin(), t[i].end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80; });
      if (has_letter && t[i].size() >= 3 && !filler_words().count(t[i])) add(t[i]);
    }
  }
  return out;
}

sdk::Task<json> ocr(const sdk::Payload& input, const sdk::Context& ctx, const GeminiOcrConfig& config) {
  if (input.attachments.empty()) throw StageError(PL_ERR_INVALID_INPUT, "no images in the request (multipart field 'files')");
  json images = json::array();
  json unreadable = json::array();
  std::vector<InlineImage> batch;
  std::vector<std::size_t> batch_index;  // batch position -> image index
  for (std::size_t i = 0; i < input.attachments.size(); ++i) {
    const auto& a = input.attachments[i];
    json image = {{"image", i}, {"name", a.name}, {"readable", false}, {"text", ""}, {"keywords", json::array()}};
    const std::string type = a.data ? sniff_image_type(*a.data) : "";
    if (type.empty()) {
      image["error"] = "not a PNG, JPEG, WebP or GIF image";
      unreadable.push_back({{"image", i}, {"name", a.name}, {"reason", image["error"]}});
    } else {
      batch.push_back({type, a.data});
      batch_index.push_back(i);
    }
    images.push_back(std::move(image));
  }

  if (!batch.empty()) {
    const std::vector<std::string> texts = co_await gemini_ocr(ctx, config, batch);
    for (std::size_t k = 0; k < batch.size(); ++k) {
      json& image = images[batch_index[k]];
      const std::string text = trim(texts[k]);
      if (text.empty()) {
        image["error"] = "no legible text";
        unreadable.push_back({{"image", batch_index[k]}, {"name", image["name"]}, {"reason", "no legible text"}});
        continue;
      }
      image["readable"] = true;
      image["text"] = text;
      image["keywords"] = extract_keywords(text);
    }
  }
  std::sort(unreadable.begin(), unreadable.end(), [](const json& a, const json& b) { return a["image"] < b["image"]; });

  json keywords = json::array();
  std::set<std::string> seen;
  for (const json& image : images)
    for (const json& k : image["keywords"])
      if (seen.insert(k.get<std::string>()).second) keywords.push_back(k);
  co_return json{{"images", std::move(images)}, {"keywords", std::move(keywords)}, {"unreadable", std::move(unreadable)}};
}

// ---- analysis --------------------------------------------------------------------------------

AnalysisConfig AnalysisConfig::from(const json& config, std::string_view plugin) {
  using C = AnalysisConfig;
  return read_config<C>(config, plugin,
                        {{"provider", &C::provider}, {"model", &C::model}, {"max_candidates", &C::max_candidates},
                         {"min_confidence", &C::min_confidence}, {"timeout_ms", &C::timeout_ms}});
}

std::vector<const json*> candidate_drugs(const json& drugs, const json& images, std::size_t limit) {
  std::vector<std::set<std::string>> keyword_sets;
  for (const json& image : images) {
    if (!image.value("readable", false)) continue;
    std::set<std::string> k;
    for (const json& kw : image.value("keywords", json::array())) k.insert(kw.get<std::string>());
    keyword_sets.push_back(std::move(k));
  }
  auto significant = [](const std::string& s) {
    std::vector<std::string> out;
    for (auto& t : tokens(s))
      if (t.size() >= 3 && !is_number(t) && !filler_words().count(t)) out.push_back(t);
    return out;
  };
  std::vector<std::pair<double, const json*>> scored;
  for (const json& d : drugs) {
    const auto brand = significant(d.value("brand", ""));
    const auto generic = significant(d.value("generic", ""));
    const std::string imprint = lower(d.value("imprint", ""));
    const std::string strength = normal_strength(d.value("strength", ""));
    const auto maker = significant(d.value("manufacturer", ""));
    double best = 0;
    for (const auto& k : keyword_sets) {
      auto all_in = [&](const std::vector<std::string>& words) {
        return !words.empty() && std::all_of(words.begin(), words.end(), [&](const std::string& w) { return k.count(w) > 0; });
      };
      const bool brand_hit = all_in(brand);
      const bool generic_hit = !generic.empty() && k.count(generic.front()) > 0;
      const bool imprint_hit = !imprint.empty() && k.count(imprint) > 0;
      if (!brand_hit && !generic_hit && !imprint_hit) continue;
      double score = 3.0 * brand_hit + 3.0 * generic_hit + 2.0 * imprint_hit;
      if (!strength.empty() && k.count(strength)) score += 1.0;
      if (!maker.empty() && k.count(maker.front())) score += 0.5;
      best = std::max(best, score);
    }
    if (best > 0) scored.emplace_back(best, &d);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<const json*> out;
  for (std::size_t i = 0; i < scored.size() && i < limit; ++i) out.push_back(scored[i].second);
  return out;
}

namespace {

const json& matches_schema() {
  static const json schema = json::parse(R"({
    "type": "object", "additionalProperties": false, "required": ["medicines"],
    "properties": {"medicines": {"type": "array", "items": {
      "type": "object", "additionalProperties": false,
      "required": ["image", "drug_id", "confidence", "matched_keywords"],
      "properties": {"image": {"type": "integer"}, "drug_id": {"type": "integer"},
                     "confidence": {"type": "number"},
                     "matched_keywords": {"type": "array", "items": {"type": "string"}}}}}}})");
  return schema;
}

constexpr const char* kAnalysisInstructions =
    "You identify medicines from the text printed on their packages. The user message is a JSON document with "
    "the OCR text and keywords of each package image and a list of candidate drugs from a drug database. For "
    "each image, list the candidate drugs the package shows, each with a confidence between 0 and 1 and the "
    "keywords that support it: brand or generic name on the package means high confidence; strength and "
    "imprint agreeing raise it; only an ingredient or the manufacturer matching means low confidence. Use only "
    "drug ids from the list; list a drug at most once per image; leave out images that show none.";

}  // namespace

sdk::Task<json> analyze(const json& input, const sdk::Context& ctx, const AnalysisConfig& config) {
  if (!input.is_object() || !input.contains("drugs") || !input.contains("ocr"))
    throw StageError(PL_ERR_INVALID_INPUT, "input needs the outputs of stages 'drugs' and 'ocr'");
  const json drugs = input["drugs"].value("drugs", json::array());
  const json& ocr = input["ocr"];
  const json images = ocr.value("images", json::array());
  const json unreadable = ocr.value("unreadable", json::array());

  const auto candidates = candidate_drugs(drugs, images, config.max_candidates);
  std::map<long long, const json*> by_id;
  for (const json* d : candidates) by_id[(*d)["id"].get<long long>()] = d;
  std::map<long long, const json*> readable;  // image index -> image
  json user_images = json::array();
  for (const json& image : images)
    if (image.value("readable", false)) {
      readable[image["image"].get<long long>()] = &image;
      user_images.push_back({{"image", image["image"]}, {"text", image["text"]}, {"keywords", image["keywords"]}});
    }

  // (image, drug) -> best match
  std::map<std::pair<long long, long long>, json> matches;
  if (!candidates.empty() && !readable.empty()) {
    json user_drugs = json::array();
    for (const json* d : candidates) user_drugs.push_back(*d);
    ChatTask task{config.provider, config.model, kAnalysisInstructions,
                  {{"task", "medicine_matches"}, {"images", std::move(user_images)}, {"drugs", std::move(user_drugs)}},
                  "medicine_matches", matches_schema()};
    co_await run_requests(
        ctx, 1, Schedule::Serial,
        [&](std::size_t) { return with_timeout(chat_request(task), config.timeout_ms); },
        [&](std::size_t, const sdk::HttpResponse& r) {
          json answer = chat_result(r, "medicine_matches");
          if (!answer.contains("medicines") || !answer["medicines"].is_array()) throw_malformed("medicine_matches", "no medicines array");
          matches.clear();
          for (const json& m : answer["medicines"]) {
            if (!m.is_object() || !m.contains("image") || !m["image"].is_number_integer() || !m.contains("drug_id") ||
                !m["drug_id"].is_number_integer() || !m.contains("confidence") || !m["confidence"].is_number())
              throw_malformed("medicine_matches", "entry without integer image / drug_id or numeric confidence");
            const long long image = m["image"].get<long long>(), id = m["drug_id"].get<long long>();
            if (!by_id.count(id) || !readable.count(image)) {
              ctx.log(PL_LOG_WARN, "dropped a match to drug " + std::to_string(id) + " on image " +
                                       std::to_string(image) + " outside the candidates / readable images");
              continue;
            }
            const double confidence = std::clamp(m["confidence"].get<double>(), 0.0, 1.0);
            if (confidence < config.min_confidence) continue;
            auto& slot = matches[{image, id}];
            if (!slot.is_null() && slot["confidence"].get<double>() >= confidence) continue;
            const json& d = *by_id[id];
            json keywords = json::array();
            for (const json& k : m.value("matched_keywords", json::array()))
              if (k.is_string()) keywords.push_back(k);
            slot = {{"image", image},
                    {"image_name", (*readable[image])["name"]},
                    {"drug_id", id},
                    {"brand", d["brand"]},
                    {"generic", d["generic"]},
                    {"strength", d["strength"]},
                    {"form", d["form"]},
                    {"manufacturer", d["manufacturer"]},
                    {"imprint", d["imprint"]},
                    {"confidence", confidence},
                    {"matched_keywords", std::move(keywords)}};
          }
        });
  }

  std::vector<json> list;
  for (auto& [key, m] : matches) list.push_back(std::move(m));
  std::stable_sort(list.begin(), list.end(), [](const json& a, const json& b) {
    if (a["image"] != b["image"]) return a["image"].get<long long>() < b["image"].get<long long>();
    if (a["confidence"] != b["confidence"]) return a["confidence"].get<double>() > b["confidence"].get<double>();
    return a["drug_id"].get<long long>() < b["drug_id"].get<long long>();
  });
  co_return json{{"medicines", list},
                 {"unreadable_images", unreadable},
                 {"partial", !unreadable.empty()},
                 {"candidates", candidates.size()}};
}

}  // namespace pipelined::plugins::medicine

#include "provider-sim/content.h"

#include "plugins/menu/common/menu_text.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <stdexcept>

namespace provider_sim {

namespace {

using pipelined::menu_text::utf8_length;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

Glossary Glossary::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read glossary " + path);
  Glossary g;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    std::string source = line.substr(0, tab);
    g.longest_ = std::max(g.longest_, source.size());
    g.entries_[std::move(source)] = trim(line.substr(tab + 1));
  }
  return g;
}

namespace {

// Code point of the UTF-8 sequence at text[i] (n bytes), 0 when it is not 1..3 bytes long.
unsigned code_point(std::string_view text, std::size_t i, std::size_t n) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  if (n == 1) return b(0);
  if (n == 2 && i + 1 < text.size()) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (n == 3 && i + 2 < text.size()) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return 0;
}

bool is_kana(unsigned cp) { return (cp >= 0x3041 && cp <= 0x3096) || (cp >= 0x30A1 && cp <= 0x30FA) || cp == 0x30FC; }

// Hepburn romanisation of a run of kana (hiragana or katakana): "いくら" -> "ikura", "ちゃーしゅー" ->
// "chaashuu", "っ" doubles the next consonant, "ー" repeats the vowel before it.
std::string romanize(std::string_view kana) {
  // Hiragana U+3041..U+3096 (katakana is 0x60 above) in code point order.
  static const char* kRomaji[] = {
      "a",  "a",  "i",  "i",  "u",  "u",  "e",  "e",  "o",  "o",  "ka", "ga", "ki", "gi", "ku", "gu", "ke", "ge", "ko", "go",
      "sa", "za", "shi", "ji", "su", "zu", "se", "ze", "so", "zo", "ta", "da", "chi", "ji", "tsu", "tsu", "zu", "te", "de", "to",
      "do", "na", "ni", "nu", "ne", "no", "ha", "ba", "pa", "hi", "bi", "pi", "fu", "bu", "pu", "he", "be", "pe", "ho", "bo",
      "po", "ma", "mi", "mu", "me", "mo", "ya", "ya", "yu", "yu", "yo", "yo", "ra", "ri", "ru", "re", "ro", "wa", "wa", "i",
      "e",  "o",  "n",  "vu", "ka", "ke"};
  std::vector<std::string> syllables;
  bool double_next = false;
  for (std::size_t i = 0; i < kana.size();) {
    const std::size_t n = utf8_length(static_cast<unsigned char>(kana[i]));
    unsigned cp = code_point(kana, i, n);
    i += n;
    if (cp == 0x30FC) {  // ー: the vowel again
      if (!syllables.empty()) syllables.back() += syllables.back().back();
      continue;
    }
    if (cp >= 0x30A1 && cp <= 0x30F6) cp -= 0x60;
    if (cp < 0x3041 || cp > 0x3096) continue;
    if (cp == 0x3063) {  // small っ
      double_next = true;
      continue;
    }
    std::string r = kRomaji[cp - 0x3041];
    // Small ゃゅょ after an i-syllable: きゃ -> kya, しゃ -> sha, ちゃ -> cha, じゃ -> ja.
    const bool small_y = cp == 0x3083 || cp == 0x3085 || cp == 0x3087;
    if (small_y && !syllables.empty() && syllables.back().size() >= 2 && syllables.back().back() == 'i') {
      std::string& prev = syllables.back();
      prev.pop_back();
      const char vowel = r.back();
      if (prev.back() == 'h' || prev.back() == 'j') prev += vowel;  // sh, ch, j
      else prev += std::string("y") + vowel;
      continue;
    }
    if (double_next) {
      r = (r.rfind("ch", 0) == 0 ? "t" : std::string(1, r[0])) + r;
      double_next = false;
    }
    syllables.push_back(std::move(r));
  }
  std::string out;
  for (const auto& syl : syllables) out += syl;
  return out;
}

}  // namespace

std::string Glossary::translate(std::string_view text) const {
  if (auto it = entries_.find(text); it != entries_.end()) return it->second;
  // Longest match left to right. What no entry covers: a run of kana is romanised (a dish name is
  // printed the way it sounds: "いくら" -> "Ikura"); a run of other text (kanji the glossary lacks,
  // latin) is left out when the rest of the text was translated, and the whole text comes back as
  // it is when nothing of it was, as a translator leaves a name it does not know.
  std::string out;
  bool translated = false;
  auto append = [&](std::string word) {
    if (word.empty()) return;
    out += (out.empty() ? "" : " ") + word;
  };
  std::string kana;
  auto flush_kana = [&] {
    // One kana alone is a particle or a prefix (の, ご, お, と): nothing to print.
    if (kana.empty() || kana.size() <= 3) {
      kana.clear();
      return;
    }
    std::string r = romanize(kana);
    if (!r.empty()) {
      r[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(r[0])));
      append(std::move(r));
      translated = true;
    }
    kana.clear();
  };
  for (std::size_t i = 0; i < text.size();) {
    std::size_t best = 0;
    const std::string* english = nullptr;
    for (std::size_t len = std::min(longest_, text.size() - i); len > 0; --len) {
      if (auto it = entries_.find(text.substr(i, len)); it != entries_.end()) {
        best = len;
        english = &it->second;
        break;
      }
    }
    if (english != nullptr) {
      flush_kana();
      append(*english);
      translated = true;
      i += best;
      continue;
    }
    const std::size_t n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
    const unsigned cp = code_point(text, i, n);
    if (is_kana(cp)) {
      kana.append(text.substr(i, n));
    } else {
      flush_kana();
      // Digits and Latin words are kept (a size, "XL"); other unknown characters are left out.
      if (cp < 0x80 && std::isalnum(static_cast<unsigned char>(cp))) {
        std::size_t e = i;
        while (e < text.size() && std::isalnum(static_cast<unsigned char>(text[e]))) ++e;
        append(std::string(text.substr(i, e - i)));
        i = e;
        continue;
      }
    }
    i += n;
  }
  flush_kana();
  return translated ? out : trim(std::string(text));
}

std::string detect_language(std::string_view text) {
  const std::string script = pipelined::menu_text::script_of(text);
  return script == "zh" ? "zh-TW" : script;
}

json menu_categories(const json& request) {
  // The same parsing as the pipeline's own (plugins/menu/common/menu_text.h): a line without a
  // price is a heading, prices are read through OCR's currency confusions, and items before any
  // heading get a category named in the menu's own script.
  std::vector<std::pair<std::size_t, std::string>> lines;
  for (const auto& l : request.value("lines", json::array())) lines.emplace_back(l.value("line", std::size_t{0}), l.value("text", ""));
  json categories = json::array();
  for (const auto& c : pipelined::menu_text::parse_menu(lines)) {
    json items = json::array();
    for (const auto& item : c.items) items.push_back({{"line", item.line}, {"name", item.name}, {"price", item.price}});
    categories.push_back({{"name", c.name}, {"items", std::move(items)}});
  }
  return {{"categories", categories}};
}

json menu_translations(const json& request, const Glossary& g) {
  json out = json::array();
  for (const auto& t : request.value("texts", json::array()))
    out.push_back({{"id", t.value("id", 0)}, {"translation", g.translate(t.value("text", ""))}});
  return {{"translations", out}};
}

json menu_descriptions(const json& request) {
  json out = json::array();
  // Only text in Latin script goes into the English sentence: an untranslated category is left out.
  auto latin = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  };
  for (const auto& item : request.value("items", json::array())) {
    std::string name = item.value("translation", "");
    if (name.empty()) name = item.value("original", "");
    if (name.empty()) name = "This dish";
    std::string category = item.value("category", "");
    if (!latin(category)) category.clear();
    out.push_back({{"id", item.value("id", 0)},
                   {"description", name + " is a house favourite" + (category.empty() ? "" : " among our " + lower(category)) +
                                       ", prepared fresh to order."}});
  }
  return {{"descriptions", out}};
}

json medicine_matches(const json& request) {
  json medicines = json::array();
  for (const auto& image : request.value("images", json::array())) {
    const std::string text = lower(image.value("text", ""));
    for (const auto& drug : request.value("drugs", json::array())) {
      double confidence = 0;
      json matched = json::array();
      auto has = [&](const char* field) {
        const std::string v = lower(drug.value(field, ""));
        if (v.size() < 3 || text.find(v) == std::string::npos) return false;
        matched.push_back(v);
        return true;
      };
      const bool brand = has("brand"), generic = has("generic");
      if (brand && generic) confidence = 0.95;
      else if (brand) confidence = 0.85;
      else if (generic) confidence = 0.8;
      else if (has("ingredients") || has("manufacturer")) confidence = 0.4;
      if (confidence == 0) continue;
      if (has("strength")) confidence += 0.03;
      if (has("imprint")) confidence += 0.02;
      medicines.push_back({{"image", image.value("image", 0)}, {"drug_id", drug.value("id", 0)},
                           {"confidence", std::min(1.0, confidence)}, {"matched_keywords", matched}});
    }
  }
  return {{"medicines", medicines}};
}

json conforming_value(const json& schema) {
  const std::string type = schema.contains("type") && schema["type"].is_string() ? schema["type"].get<std::string>() : "object";
  if (schema.contains("enum") && schema["enum"].is_array() && !schema["enum"].empty()) return schema["enum"][0];
  if (type == "object") {
    json out = json::object();
    const json properties = schema.value("properties", json::object());
    for (const auto& [name, sub] : properties.items()) out[name] = conforming_value(sub);
    return out;
  }
  if (type == "array") return json::array({conforming_value(schema.value("items", json::object()))});
  if (type == "string") return "sample";
  if (type == "integer") return 1;
  if (type == "number") return 0.5;
  if (type == "boolean") return true;
  return nullptr;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xF];
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string clean;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) clean += c;
  if (clean.size() % 4 != 0) return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  std::size_t size = static_cast<std::size_t>(n);
  if (!clean.empty() && clean.back() == '=') --size;  // EVP_DecodeBlock counts padding as zero bytes
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') --size;
  out.resize(size);
  return out;
}

}  // namespace provider_sim

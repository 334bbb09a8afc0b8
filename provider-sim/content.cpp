#include "provider-sim/content.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <stdexcept>

namespace provider_sim {

namespace {

// Length in bytes of the UTF-8 sequence starting with `lead`.
std::size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// A price as printed at the end of a menu line: ¥1200, 1200円, NT$180, $5, 180元.
const std::regex& price_pattern() {
  static const std::regex re(R"((?:¥|NT\$|\$|￥)?\s?[0-9][0-9,]*(?:\.[0-9]+)?\s?(?:円|元)?\s*$)");
  return re;
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

std::string Glossary::translate(std::string_view text) const {
  if (auto it = entries_.find(text); it != entries_.end()) return it->second;
  std::string out, unknown;
  auto flush_unknown = [&] {
    if (unknown.empty()) return;
    const std::string t = trim(unknown);
    if (!t.empty()) out += (out.empty() ? "" : " ") + (std::isalnum(static_cast<unsigned char>(t[0])) ? t : "[" + t + "]");
    unknown.clear();
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
      flush_unknown();
      out += (out.empty() ? "" : " ") + *english;
      i += best;
    } else {
      const std::size_t n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
      unknown.append(text.substr(i, n));
      i += n;
    }
  }
  flush_unknown();
  return out;
}

std::string detect_language(std::string_view text) {
  bool cjk = false;
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = utf8_length(c);
    if (n == 3 && i + 2 < text.size()) {
      const unsigned cp = ((c & 0x0F) << 12) | ((text[i + 1] & 0x3F) << 6) | (text[i + 2] & 0x3F);
      if (cp >= 0x3040 && cp <= 0x30FF) return "ja";  // hiragana, katakana
      if (cp >= 0x4E00 && cp <= 0x9FFF) cjk = true;
    }
    i += n;
  }
  return cjk ? "zh-TW" : "en";
}

json menu_categories(const json& request) {
  // Items before any header go into a category picked by keyword.
  static const std::vector<std::pair<std::vector<std::string>, std::string>> kKeywords = {
      {{"ラーメン", "うどん", "そば", "麺", "麵"}, "麺類"}, {{"丼", "飯"}, "ご飯もの"},
      {{"茶", "ビール", "酒", "奶", "漿"}, "飲み物"},      {{"冰", "アイス", "餅", "団子"}, "デザート"}};
  json categories = json::array();
  std::map<std::string, std::size_t> index;
  std::string current;
  for (const auto& l : request.value("lines", json::array())) {
    const std::string text = trim(l.value("text", ""));
    if (text.empty()) continue;
    std::smatch m;
    if (!std::regex_search(text, m, price_pattern()) || m.position(0) == 0) {
      current = text;  // a header
      continue;
    }
    const std::string name = trim(text.substr(0, static_cast<std::size_t>(m.position(0))));
    std::string category = current;
    if (category.empty()) {
      category = "その他";
      for (const auto& [words, cat] : kKeywords)
        for (const auto& w : words)
          if (name.find(w) != std::string::npos && category == "その他") category = cat;
    }
    if (!index.count(category)) {
      index[category] = categories.size();
      categories.push_back({{"name", category}, {"items", json::array()}});
    }
    categories[index[category]]["items"].push_back({{"line", l.value("line", 0)}, {"name", name}, {"price", trim(m.str(0))}});
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
  for (const auto& item : request.value("items", json::array())) {
    const std::string name = item.value("translation", item.value("original", "This dish"));
    const std::string category = item.value("category", "");
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

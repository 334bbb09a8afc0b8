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

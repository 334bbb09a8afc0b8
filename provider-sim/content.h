// provider-sim's answers: deterministic content for the providers' protocols, as pure functions.
// The server (main.cpp) adds latency, limits and faults around them.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <string_view>

namespace provider_sim {

using nlohmann::json;

// Menu words (Japanese, Traditional Chinese) to English, from provider-sim/data/glossary.tsv.
class Glossary {
 public:
  // Throws std::runtime_error when the file cannot be read.
  static Glossary load(const std::string& path);
  // Exact entry, else longest-match segmentation left to right. Text no entry covers: kana runs
  // romanised ("いくら" -> "Ikura"), other runs left out; text with nothing known comes back as is.
  // Never brackets or untranslated fragments next to English.
  std::string translate(std::string_view text) const;
  std::size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, std::string, std::less<>> entries_;
  std::size_t longest_ = 0;
};

// "ja" when the text has kana, "zh-TW" for other CJK text, else "en".
std::string detect_language(std::string_view text);

// Chat completions' structured output, by task (the json_schema name; the user message is a
// JSON document, see docs/pipelines.md). Each returns the JSON the model would put in `content`.
json menu_categories(const json& request);                        // {"lines": [{"line", "text"}]}
json menu_translations(const json& request, const Glossary& g);   // {"texts": [{"id", "text"}]}
json menu_descriptions(const json& request);                      // {"items": [{"id", "translation", ...}]}
json medicine_matches(const json& request);                       // {"images": [...], "drugs": [...]}
// Any other schema: a value that conforms to it (required properties, declared types).
json conforming_value(const json& schema);

// SHA-256 of bytes, lower-case hex.
std::string sha256_hex(std::string_view bytes);
// Standard base64 decoding; nullopt on invalid input.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace provider_sim

// Scripted providers for the fake host: what docs/pipelines.md asks of a server, answered at once
// (menu_world) or from the medicine fixtures' sidecar texts (gemini_world), like provider-sim.
#pragma once

#include "plugins/common/providers.h"
#include "tests/pipelines/fake_host.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace fake {

namespace detail {
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace detail

inline bool has_digit(const std::string& s) { return s.find_first_of("0123456789") != std::string::npos; }

// A well-behaved provider for the menu tasks (what docs/pipelines.md asks of a server).
inline Reply menu_world(const Call& c) {
  Reply r;
  if (c.path == "chat/completions") {
    const std::string schema = c.body["response_format"]["json_schema"]["name"];
    const json user = json::parse(c.body["messages"][1]["content"].get<std::string>());
    json answer;
    if (schema == "menu_categories") {
      json categories = json::array();
      std::map<std::string, std::size_t> index;
      std::string header = "Other";
      for (const json& l : user["lines"]) {
        const std::string text = l["text"];
        if (!has_digit(text)) {
          header = text;
          continue;
        }
        if (!index.count(header)) {
          index[header] = categories.size();
          categories.push_back({{"name", header}, {"items", json::array()}});
        }
        const auto space = text.rfind(' ');
        categories[index[header]]["items"].push_back(
            {{"line", l["line"]}, {"name", text.substr(0, space)}, {"price", space == std::string::npos ? "" : text.substr(space + 1)}});
      }
      answer = {{"categories", categories}};
    } else if (schema == "menu_translations") {
      json list = json::array();
      for (const json& t : user["texts"]) list.push_back({{"id", t["id"]}, {"translation", "C(" + t["text"].get<std::string>() + ")"}});
      answer = {{"translations", list}};
    } else if (schema == "menu_descriptions") {
      json list = json::array();
      for (const json& t : user["items"])
        list.push_back({{"id", t["id"]}, {"description", "About " + t["translation"].get<std::string>() + "."}});
      answer = {{"descriptions", list}};
    } else if (schema == "medicine_matches") {
      // A drug whose brand is printed on the package.
      auto lower = [](std::string v) {
        for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        return v;
      };
      json list = json::array();
      for (const json& image : user["images"])
        for (const json& d : user["drugs"])
          if (lower(image["text"]).find(lower(d["brand"])) != std::string::npos)
            list.push_back({{"image", image["image"]}, {"drug_id", d["id"]}, {"confidence", 0.9}, {"matched_keywords", {lower(d["brand"])}}});
      answer = {{"medicines", list}};
    }
    r.body = chat_reply(answer);
  } else if (c.provider == "google_translate") {
    json list = json::array();
    for (const json& q : c.body["q"]) list.push_back({{"translatedText", "T(" + q.get<std::string>() + ")"}, {"detectedSourceLanguage", "ja"}});
    r.body = json{{"data", {{"translations", list}}}}.dump();
  } else if (c.path == "images/generations") {
    r.body = json{{"created", 1}, {"data", json::array({{{"url", "http://img/" + std::to_string(std::hash<std::string>{}(c.body["prompt"]))}}})}}.dump();
  } else {
    r.status = 404;
  }
  return r;
}

// Gemini answering from the fixtures' sidecar texts, like provider-sim.
inline Reply gemini_world(const Call& c) {
  std::map<std::string, std::string> texts;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/medicine"))
    if (entry.path().extension() == ".png") {
      auto sidecar = entry.path();
      sidecar.replace_extension(".txt");
      texts[detail::read_file(entry.path())] = detail::read_file(sidecar);
    }
  json answer = json::array();
  for (const json& part : c.body["contents"][0]["parts"])
    if (part.contains("inline_data")) answer.push_back(texts[pipelined::plugins::base64_decode(part["inline_data"]["data"].get<std::string>())]);
  Reply r;
  r.body = json{{"candidates", json::array({{{"content", {{"parts", json::array({{{"text", answer.dump()}}})}, {"role", "model"}}},
                                             {"finishReason", "STOP"}}})}}
               .dump();
  return r;
}

// Every provider of the reference pipelines.
inline Reply provider_world(const Call& c) {
  return c.path.find(":generateContent") != std::string::npos ? gemini_world(c) : menu_world(c);
}

// provider-sim's latency model (docs/provider-sim.md), scaled: chat 700 ms + 12 ms per output token,
// translate 150 ms + 4 ms per segment, image 6 s, Gemini 1.5 s + 0.5 s per image. Output tokens of
// the chat tasks are estimated per item: categorize 15, translation 8, description 40, match 30.
inline int modelled_latency_ms(const Call& c, double scale) {
  double ms = 0;
  if (c.path == "chat/completions") {
    const std::string schema = c.body["response_format"]["json_schema"]["name"];
    const json user = json::parse(c.body["messages"][1]["content"].get<std::string>());
    double tokens = 20;
    if (schema == "menu_categories") {
      for (const json& l : user["lines"]) tokens += has_digit(l["text"]) ? 15 : 0;
    } else if (schema == "menu_translations") {
      tokens += 8.0 * user["texts"].size();
    } else if (schema == "menu_descriptions") {
      tokens += 40.0 * user["items"].size();
    } else if (schema == "medicine_matches") {
      tokens += 30.0 * user["images"].size();
    }
    ms = 700 + 12 * tokens;
  } else if (c.path == "images/generations") {
    ms = 6000;
  } else if (c.path.find(":generateContent") != std::string::npos) {
    ms = 1500 + 500.0 * (c.body["contents"][0]["parts"].size() - 1);
  } else {
    ms = 150 + 4.0 * c.body["q"].size();
  }
  return static_cast<int>(ms * scale);
}

}  // namespace fake

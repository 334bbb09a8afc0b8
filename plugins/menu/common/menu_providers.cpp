// The provider protocols only the menu stages speak (declared in menu.h): OpenAI image generation
// and Google Cloud Translation v2. The shared ones are in plugins/common/providers.*.
#include "menu.h"

namespace pipelined::plugins::menu {

using sdk::HttpRequest;
using sdk::HttpResponse;

// ---- images ----------------------------------------------------------------------------------

HttpRequest image_request(const std::string& provider, const std::string& model, const std::string& prompt,
                          const std::string& size) {
  return post_json(provider, "images/generations", {{"model", model}, {"prompt", prompt}, {"n", 1}, {"size", size}});
}

std::string image_result(const HttpResponse& response) {
  json body = parse_body(response, "images/generations");
  if (body.contains("data") && body["data"].is_array() && !body["data"].empty()) {
    const json& first = body["data"][0];
    if (first.contains("url") && first["url"].is_string() && !first["url"].get<std::string>().empty())
      return first["url"].get<std::string>();
    if (first.contains("b64_json") && first["b64_json"].is_string())
      return "data:image/png;base64," + first["b64_json"].get<std::string>();
  }
  throw_malformed("images/generations", "no data[0].url");
}

// ---- translate -------------------------------------------------------------------------------

HttpRequest translate_request(const std::string& provider, const std::vector<std::string>& texts,
                              const std::string& target) {
  return post_json(provider, "", {{"q", texts}, {"target", target}, {"format", "text"}});
}

std::vector<std::string> translate_result(const HttpResponse& response, std::size_t expected) {
  json body = parse_body(response, "translate v2");
  const json* list = nullptr;
  if (body.contains("data") && body["data"].is_object() && body["data"].contains("translations"))
    list = &body["data"]["translations"];
  if (list == nullptr || !list->is_array()) throw_malformed("translate v2", "no data.translations");
  if (list->size() != expected)
    throw_malformed("translate v2", std::to_string(list->size()) + " translations for " + std::to_string(expected) + " texts");
  std::vector<std::string> out;
  out.reserve(expected);
  for (const json& t : *list) {
    if (!t.is_object() || !t.contains("translatedText") || !t["translatedText"].is_string())
      throw_malformed("translate v2", "translation without translatedText");
    out.push_back(t["translatedText"].get<std::string>());
  }
  return out;
}
}  // namespace pipelined::plugins::menu

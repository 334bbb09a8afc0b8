#include "providers.h"

#include <algorithm>
#include <stdexcept>

namespace pipelined::plugins {

using sdk::HttpRequest;
using sdk::HttpResponse;
using sdk::StageError;

namespace {

const std::vector<std::pair<std::string, std::string>> kJsonHeaders = {{"Content-Type", "application/json"}};

std::string snippet(const std::string& body) {
  constexpr std::size_t kMax = 200;
  return body.size() <= kMax ? body : body.substr(0, kMax) + "...";
}

}  // namespace

// ---- config ----------------------------------------------------------------------------------

void require_known_keys(const json& config, const std::vector<std::string>& allowed, std::string_view plugin) {
  if (!config.is_object()) throw std::invalid_argument(std::string(plugin) + ": config must be a JSON object");
  for (const auto& [key, value] : config.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string known;
      for (const auto& k : allowed) known += (known.empty() ? "" : ", ") + k;
      throw std::invalid_argument(std::string(plugin) + ": unknown config key '" + key + "' (known: " + known + ")");
    }
  }
}

std::string config_string(const json& config, const char* key, const std::string& fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw std::invalid_argument(std::string("config '") + key + "' must be a string");
  return it->get<std::string>();
}

std::size_t config_size(const json& config, const char* key, std::size_t fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<long long>() <= 0)
    throw std::invalid_argument(std::string("config '") + key + "' must be a positive integer");
  return it->get<std::size_t>();
}

double config_number(const json& config, const char* key, double fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw std::invalid_argument(std::string("config '") + key + "' must be a number");
  return it->get<double>();
}

std::int64_t config_ms(const json& config, const char* key) {
  const double ms = config_number(config, key, 0);
  if (ms < 0) throw std::invalid_argument(std::string("config '") + key + "' must not be negative");
  return static_cast<std::int64_t>(ms);
}

// ---- responses -------------------------------------------------------------------------------

void throw_if_failed(const HttpResponse& response, std::string_view what) {
  if (response.ok()) return;
  std::string cls = response.error_class;
  if (cls.empty()) cls = response.status == 429 ? PL_ERR_RATE_LIMITED : PL_ERR_UPSTREAM;
  std::string message = std::string(what) + ": ";
  if (!response.error.empty()) message += response.error;
  if (response.status != 0) message += (response.error.empty() ? "" : ", ") + std::string("HTTP ") + std::to_string(response.status);
  if (!response.body.empty()) message += ": " + snippet(response.body);
  if (response.attempts > 1) message += " (after " + std::to_string(response.attempts) + " attempts)";
  throw StageError(cls, message);
}

void throw_malformed(std::string_view what, const std::string& detail) {
  throw StageError(PL_ERR_MALFORMED, std::string(what) + ": malformed answer: " + detail);
}

HttpRequest post_json(const std::string& provider, std::string path, const json& body) {
  HttpRequest r;
  r.provider = provider;
  r.method = "POST";
  r.path = std::move(path);
  r.headers = kJsonHeaders;
  r.body = body.dump();
  return r;
}

json parse_body(const HttpResponse& response, std::string_view what) {
  throw_if_failed(response, what);
  json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw_malformed(what, "body is not JSON: " + snippet(response.body));
  return body;
}

// ---- chat ------------------------------------------------------------------------------------

HttpRequest chat_request(const ChatTask& task) {
  json body = {
      {"model", task.model},
      {"temperature", 0},
      {"messages",
       json::array({{{"role", "system"}, {"content", task.system}}, {{"role", "user"}, {"content", task.user.dump()}}})},
      {"response_format",
       {{"type", "json_schema"}, {"json_schema", {{"name", task.schema_name}, {"strict", true}, {"schema", task.schema}}}}},
  };
  return post_json(task.provider, "chat/completions", body);
}

json chat_result(const HttpResponse& response, std::string_view what) {
  json body = parse_body(response, what);
  std::string content;
  bool found = false;
  if (body.contains("choices") && body["choices"].is_array() && !body["choices"].empty()) {
    // value() throws json::type_error on a non-object, which would fail the stage as "internal"
    // instead of "malformed" (retried); an answer of any shape is the provider's to get wrong.
    const json& choice = body["choices"][0];
    const json message = choice.is_object() ? choice.value("message", json::object()) : json::object();
    if (message.contains("refusal") && message["refusal"].is_string())
      throw StageError(PL_ERR_UPSTREAM, std::string(what) + ": the model refused: " + message["refusal"].get<std::string>());
    if (message.contains("content") && message["content"].is_string()) {
      content = message["content"].get<std::string>();
      found = true;
    }
  }
  if (!found) throw_malformed(what, "no choices[0].message.content");
  json result = json::parse(content, nullptr, false);
  if (result.is_discarded() || !result.is_object()) throw_malformed(what, "message content is not a JSON object: " + snippet(content));
  return result;
}

// ---- Gemini ----------------------------------------------------------------------------------

HttpRequest gemini_ocr_request(const std::string& provider, const std::string& model,
                               const std::vector<InlineImage>& images) {
  const std::string n = std::to_string(images.size());
  json parts = json::array();
  parts.push_back(
      {{"text", "There " + std::string(images.size() == 1 ? "is 1 image" : "are " + n + " images") +
                    ". Transcribe all printed text of each image exactly, line by line. Answer with a JSON array of "
                    "exactly " + n + " strings: the i-th string is the text of the i-th image, lines separated by "
                    "\"\\n\"; use an empty string for an image without legible text."}});
  for (const auto& image : images)
    parts.push_back({{"inline_data", {{"mime_type", image.mime_type}, {"data", base64_encode(*image.data)}}}});
  json body = {
      {"contents", json::array({{{"role", "user"}, {"parts", parts}}})},
      {"generationConfig",
       {{"responseMimeType", "application/json"},
        {"responseSchema", {{"type", "ARRAY"}, {"items", {{"type", "STRING"}}}}},
        {"temperature", 0}}},
  };
  return post_json(provider, "models/" + model + ":generateContent", body);
}

std::vector<std::string> gemini_ocr_result(const HttpResponse& response, std::size_t expected) {
  constexpr std::string_view what = "gemini generateContent";
  json body = parse_body(response, what);
  std::string text;
  bool found = false;
  if (body.contains("candidates") && body["candidates"].is_array() && !body["candidates"].empty()) {
    const json& candidate = body["candidates"][0];  // not an object: malformed, as in chat_result
    const json content = candidate.is_object() ? candidate.value("content", json::object()) : json::object();
    if (content.contains("parts") && content["parts"].is_array()) {
      for (const json& part : content["parts"]) {
        if (part.is_object() && part.contains("text") && part["text"].is_string()) {
          text += part["text"].get<std::string>();
          found = true;
        }
      }
    }
  }
  if (!found) {
    if (body.contains("promptFeedback") && body["promptFeedback"].contains("blockReason"))
      throw StageError(PL_ERR_UPSTREAM, std::string(what) + ": prompt blocked: " + body["promptFeedback"]["blockReason"].dump());
    throw_malformed(what, "no candidates[0].content.parts[].text");
  }
  json texts = json::parse(text, nullptr, false);
  if (texts.is_discarded() || !texts.is_array()) throw_malformed(what, "answer is not a JSON array: " + snippet(text));
  if (texts.size() != expected)
    throw_malformed(what, std::to_string(texts.size()) + " texts for " + std::to_string(expected) + " images");
  std::vector<std::string> out;
  for (const json& t : texts) {
    if (!t.is_string()) throw_malformed(what, "array entry is not a string");
    out.push_back(t.get<std::string>());
  }
  return out;
}

GeminiOcrConfig GeminiOcrConfig::from(const json& config, std::string_view plugin) {
  using C = GeminiOcrConfig;
  return read_config<C>(config, plugin, {{"provider", &C::provider}, {"model", &C::model}, {"timeout_ms", &C::timeout_ms}});
}

sdk::Task<std::vector<std::string>> gemini_ocr(const sdk::Context& ctx, const GeminiOcrConfig& config,
                                               std::vector<InlineImage> images) {
  std::vector<std::string> texts;
  co_await run_requests(
      ctx, 1, Schedule::Serial,
      [&](std::size_t) { return with_timeout(gemini_ocr_request(config.provider, config.model, images), config.timeout_ms); },
      [&](std::size_t, const HttpResponse& r) { texts = gemini_ocr_result(r, images.size()); });
  co_return texts;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    int v = value(c);
    if (v < 0) throw std::invalid_argument("invalid base64 character");
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::string sniff_image_type(std::string_view b) {
  auto starts = [&](std::string_view magic, std::size_t at = 0) { return b.size() >= at + magic.size() && b.substr(at, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return "image/png";
  if (starts("\xff\xd8\xff")) return "image/jpeg";
  if (starts("RIFF") && starts("WEBP", 8)) return "image/webp";
  if (starts("GIF87a") || starts("GIF89a")) return "image/gif";
  return "";
}

// ---- scheduling ------------------------------------------------------------------------------

sdk::Task<> run_requests(const sdk::Context& ctx, std::size_t n, Schedule schedule, std::function<HttpRequest(std::size_t)> make,
                         std::function<void(std::size_t, const HttpResponse&)> handle, int malformed_retries) {
  if (n == 0) co_return;
  const std::size_t first = schedule == Schedule::Serial ? 1 : n;
  std::vector<int> retries_left(n, malformed_retries);
  std::size_t next_index = first;  // touched by the handler only, after this
  sdk::RequestSet set(ctx, [&](std::size_t i, const HttpResponse& response) {
    try {
      handle(i, response);
    } catch (const StageError& e) {
      if (e.error_class() != PL_ERR_MALFORMED || retries_left[i] <= 0) throw;
      --retries_left[i];
      ctx.log(PL_LOG_WARN, std::string(e.what()) + "; asking again");
      set.submit(i, make(i));
      return;
    }
    if (next_index < n) {
      set.submit(next_index, make(next_index));
      ++next_index;
    }
  });
  for (std::size_t i = 0; i < first; ++i) set.submit(i, make(i));
  co_await set.finished();
}

}  // namespace pipelined::plugins

// plugins/common: the provider code the menu and medicine plugins share, over the host's outbound
// HTTP service: plugin config parsing, response checks, OpenAI chat completions with JSON-schema
// output, Gemini generateContent OCR (with its stage config), base64 and image sniffing, and
// run_requests, which schedules requests with a window (1 = one after another) and hands each
// response to a handler as it arrives, with no thread waiting meanwhile. Protocols only one pipeline
// speaks live with it (plugins/menu/common: image generation, Cloud Translation).
// Shapes and schemas: docs/pipelines.md.
#pragma once

#include <pipelined/sdk.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipelined::plugins {

using json = nlohmann::json;

// How a stage variant schedules its provider requests: the only thing serial and parallel differ in.
enum class Schedule { Serial, Parallel };

// ---- plugin config helpers -------------------------------------------------------------------

// Throws std::invalid_argument naming the first key of `config` not in `allowed` (a typo in the
// daemon config then fails the plugin load with a message instead of being ignored).
void require_known_keys(const json& config, const std::vector<std::string>& allowed, std::string_view plugin);
std::string config_string(const json& config, const char* key, const std::string& fallback);
std::size_t config_size(const json& config, const char* key, std::size_t fallback);  // > 0
double config_number(const json& config, const char* key, double fallback);
// Milliseconds, not negative, whole (fractions cut off); 0 when absent. "timeout_ms": per-attempt
// timeout of the stage's requests; 0 (default) = the provider's.
std::int64_t config_ms(const json& config, const char* key);

// One key of a stage's config and the member of C it is read into, by the member's type: a string
// (config_string), a positive integer (config_size), a number (config_number) or milliseconds
// (config_ms). An absent or null key leaves the member's default.
template <class C>
struct ConfigKey {
  ConfigKey(const char* key, std::string C::*m) : name(key), read([=](const json& j, C& c) { c.*m = config_string(j, key, c.*m); }) {}
  ConfigKey(const char* key, std::size_t C::*m) : name(key), read([=](const json& j, C& c) { c.*m = config_size(j, key, c.*m); }) {}
  ConfigKey(const char* key, double C::*m) : name(key), read([=](const json& j, C& c) { c.*m = config_number(j, key, c.*m); }) {}
  ConfigKey(const char* key, std::int64_t C::*m) : name(key), read([=](const json& j, C& c) { c.*m = config_ms(j, key); }) {}
  const char* name;
  std::function<void(const json&, C&)> read;
};

// A stage's config from its JSON object: the keys are checked first (require_known_keys, with
// `keys` as the allowed list, in that order), then read in order over C's defaults.
template <class C>
C read_config(const json& config, std::string_view plugin, std::initializer_list<ConfigKey<C>> keys) {
  std::vector<std::string> allowed;
  for (const auto& k : keys) allowed.emplace_back(k.name);
  require_known_keys(config, allowed, plugin);
  C c;
  for (const auto& k : keys) k.read(config, c);
  return c;
}

// The request with its per-attempt timeout set (0: the provider's).
inline sdk::HttpRequest with_timeout(sdk::HttpRequest request, std::int64_t timeout_ms) {
  request.timeout_ms = timeout_ms;
  return request;
}

// ---- responses -------------------------------------------------------------------------------

// Throws sdk::StageError with the response's error class ("upstream" for a non-2xx status without
// one, "rate_limited" for 429) when the request did not succeed. `what` names the call.
void throw_if_failed(const sdk::HttpResponse& response, std::string_view what);
// Parses a body as JSON; a parse error is a StageError of class "malformed".
json parse_body(const sdk::HttpResponse& response, std::string_view what);
[[noreturn]] void throw_malformed(std::string_view what, const std::string& detail);
// A POST of `body` as JSON to `path` of `provider`.
sdk::HttpRequest post_json(const std::string& provider, std::string path, const json& body);

// ---- OpenAI chat completions with structured output --------------------------------------------

struct ChatTask {
  std::string provider;
  std::string model;
  std::string system;       // instructions
  json user;                // the task's data, sent as a JSON document in the user message
  std::string schema_name;  // "menu_categories", ...
  json schema;              // strict JSON schema of the answer
};
sdk::HttpRequest chat_request(const ChatTask& task);
// The parsed JSON document of choices[0].message.content.
json chat_result(const sdk::HttpResponse& response, std::string_view what);

// ---- Gemini generateContent OCR ------------------------------------------------------------------

struct InlineImage {
  std::string mime_type;
  std::shared_ptr<const std::string> data;
};
// All images in one call; the answer is a JSON array with one string per image.
sdk::HttpRequest gemini_ocr_request(const std::string& provider, const std::string& model,
                                    const std::vector<InlineImage>& images);
std::vector<std::string> gemini_ocr_result(const sdk::HttpResponse& response, std::size_t expected);

// The config of an OCR stage that reads images with Gemini (menu_ocr_gemini_*, medicine_ocr_*).
struct GeminiOcrConfig {
  std::string provider = "gemini";
  std::string model = "gemini-1.5-flash";
  std::int64_t timeout_ms = 0;
  static GeminiOcrConfig from(const json& config, std::string_view plugin);
};
// The text of each of `images`, in order, from one generateContent call.
sdk::Task<std::vector<std::string>> gemini_ocr(const sdk::Context& ctx, const GeminiOcrConfig& config,
                                               std::vector<InlineImage> images);

std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);  // ignores whitespace; throws std::invalid_argument
// "image/png", "image/jpeg", "image/webp", "image/gif" from the magic bytes; "" when not an image.
std::string sniff_image_type(std::string_view bytes);

// ---- scheduling ------------------------------------------------------------------------------

// Runs requests 0..n-1 with at most `window` in flight (Serial: 1, one after another; Parallel: all
// at once, the outbound client's per-provider limits still apply) and calls handle(i, response) as
// each completes, one call at a time, on a pool thread; no thread waits in between. make may be
// called from two threads at once. A handler that throws StageError "malformed" gets the request
// sent again, up to `malformed_retries` times per request (a model answering with broken JSON usually
// answers properly the next time); any other exception ends the run and propagates.
sdk::Task<> run_requests(const sdk::Context& ctx, std::size_t n, Schedule schedule,
                         std::function<sdk::HttpRequest(std::size_t)> make,
                         std::function<void(std::size_t, const sdk::HttpResponse&)> handle, int malformed_retries = 1);

}  // namespace pipelined::plugins

// Provider protocols the reference plugins speak, over the host's outbound HTTP service:
// OpenAI chat completions with JSON-schema output and image generation, Google Cloud Translation v2,
// Gemini generateContent with inline images. Request builders and response parsers are pure
// functions; run_requests schedules requests with a window (1 = one after another) and hands each
// response to a handler as it arrives, with no thread waiting meanwhile.
// Shapes and schemas: docs/pipelines.md.
#pragma once

#include <pipelined/sdk.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
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
// "timeout_ms": per-attempt timeout of the stage's requests; 0 (default) = the provider's.
std::int64_t config_timeout_ms(const json& config);

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

// ---- OpenAI image generation ---------------------------------------------------------------------

sdk::HttpRequest image_request(const std::string& provider, const std::string& model, const std::string& prompt,
                               const std::string& size);
std::string image_result(const sdk::HttpResponse& response);  // data[0].url (or a data: URL from b64_json)

// ---- Google Cloud Translation v2 ---------------------------------------------------------------

sdk::HttpRequest translate_request(const std::string& provider, const std::vector<std::string>& texts,
                                   const std::string& target);
std::vector<std::string> translate_result(const sdk::HttpResponse& response, std::size_t expected);

// ---- Gemini generateContent OCR ------------------------------------------------------------------

struct InlineImage {
  std::string mime_type;
  std::shared_ptr<const std::string> data;
};
// All images in one call; the answer is a JSON array with one string per image.
sdk::HttpRequest gemini_ocr_request(const std::string& provider, const std::string& model,
                                    const std::vector<InlineImage>& images);
std::vector<std::string> gemini_ocr_result(const sdk::HttpResponse& response, std::size_t expected);

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

// Fuzzes the plugins' parsing of provider answers (plugins/common/providers.cpp and the menu's
// menu_providers.cpp): OpenAI chat completions (chat_result), Gemini generateContent OCR
// (gemini_ocr_result), Cloud Translation v2 (translate_result), OpenAI images (image_result),
// base64 and image sniffing. Provider answers are untrusted bytes from the network. The contract
// (providers.h) is that a bad answer is a sdk::StageError with its class ("malformed" gets the
// request retried by run_requests); any other exception would fail the stage as "internal" without
// a retry, so here it is a bug.
// Input: one byte for the HTTP status (0 -> 200), then the body.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "menu.h"
#include "providers.h"

using namespace pipelined;
using namespace pipelined::plugins;

namespace {
template <class F>
void answer(F parse) {
  try {
    parse();
  } catch (const sdk::StageError&) {
    // the documented outcome for an answer that cannot be used
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  sdk::HttpResponse r;
  static constexpr int kStatuses[] = {200, 201, 204, 400, 401, 429, 500, 503};
  r.status = kStatuses[data[0] % 8];
  r.attempts = 1 + data[0] / 8 % 3;
  r.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t expected = 1 + data[0] / 32 % 3;  // images / texts sent in the call

  answer([&] { chat_result(r, "categorize"); });
  answer([&] { gemini_ocr_result(r, expected); });
  answer([&] { menu::translate_result(r, expected); });
  answer([&] { menu::image_result(r); });
  try {
    base64_decode(r.body);  // documented: std::invalid_argument on bad input
  } catch (const std::invalid_argument&) {
  }
  sniff_image_type(r.body);
  return 0;
}

// Plugin menu_ocr_gemini_serial: stage "ocr", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class OcrGeminiSerial : public pipelined::sdk::AsyncStage {
 public:
  explicit OcrGeminiSerial(const nlohmann::json& config) : config_(menu::GeminiOcrConfig::from(config, "menu_ocr_gemini_serial")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::ocr_gemini(input, ctx, config_);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::GeminiOcrConfig config_;
};

PIPELINED_PLUGIN(OcrGeminiSerial, "menu_ocr_gemini_serial", PIPELINED_PLUGINS_VERSION, "ocr", "serial")

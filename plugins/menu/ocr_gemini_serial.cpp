// Plugin menu_ocr_gemini_serial: stage "ocr", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class OcrGeminiSerial : public pipelined::sdk::Stage {
 public:
  explicit OcrGeminiSerial(const nlohmann::json& config) : config_(menu::GeminiOcrConfig::from(config, "menu_ocr_gemini_serial")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {menu::ocr_gemini(input, ctx, config_), {}};
  }

 private:
  const menu::GeminiOcrConfig config_;
};

PIPELINED_PLUGIN(OcrGeminiSerial, "menu_ocr_gemini_serial", PIPELINED_PLUGINS_VERSION, "ocr", "serial")

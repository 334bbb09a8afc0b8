// Plugin menu_ocr_tesseract_serial: stage "ocr", variant "serial" (local libtesseract).
#include "common/menu.h"
#include "common/tesseract_reader.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class OcrTesseractSerial : public pipelined::sdk::Stage {
 public:
  explicit OcrTesseractSerial(const nlohmann::json& config)
      : reader_(menu::TesseractConfig::from(config, "menu_ocr_tesseract_serial")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {reader_.read(*menu::request_image(input).data, ctx, Schedule::Serial), {}};
  }

 private:
  const menu::TesseractReader reader_;
};

PIPELINED_PLUGIN(OcrTesseractSerial, "menu_ocr_tesseract_serial", PIPELINED_PLUGINS_VERSION, "ocr", "serial")

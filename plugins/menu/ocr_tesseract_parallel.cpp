// Plugin menu_ocr_tesseract_parallel: stage "ocr", variant "parallel" (local libtesseract).
#include "common/menu.h"
#include "common/tesseract_reader.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class OcrTesseractParallel : public pipelined::sdk::Stage {
 public:
  explicit OcrTesseractParallel(const nlohmann::json& config)
      : reader_(menu::TesseractConfig::from(config, "menu_ocr_tesseract_parallel")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {reader_.read(*menu::request_image(input).data, ctx, Schedule::Parallel), {}};
  }

 private:
  const menu::TesseractReader reader_;
};

PIPELINED_PLUGIN(OcrTesseractParallel, "menu_ocr_tesseract_parallel", PIPELINED_PLUGINS_VERSION, "ocr", "parallel")

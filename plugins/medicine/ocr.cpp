// Plugins medicine_ocr_serial and medicine_ocr_parallel: stage "ocr", one source compiled twice
// (MEDICINE_OCR_VARIANT). The code is the same: the serial variant's config says `after: [drugs]`,
// so it waits for the database query, the parallel one overlaps with it.
#include "common/medicine.h"

namespace medicine = pipelined::plugins::medicine;

class MedicineOcr : public pipelined::sdk::AsyncStage {
 public:
  explicit MedicineOcr(const nlohmann::json& config)
      : config_(medicine::OcrConfig::from(config, "medicine_ocr_" MEDICINE_OCR_VARIANT)) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await medicine::ocr(input, ctx, config_);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const medicine::OcrConfig config_;
};

PIPELINED_PLUGIN(MedicineOcr, "medicine_ocr_" MEDICINE_OCR_VARIANT, PIPELINED_PLUGINS_VERSION, "ocr", MEDICINE_OCR_VARIANT)

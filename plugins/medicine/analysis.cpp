// Plugin medicine_analysis: stage "analysis", variant "serial" (one chat call).
#include "common/medicine.h"

namespace medicine = pipelined::plugins::medicine;

class Analysis : public pipelined::sdk::Stage {
 public:
  explicit Analysis(const nlohmann::json& config) : config_(medicine::AnalysisConfig::from(config, "medicine_analysis")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {medicine::analyze(input.json, ctx, config_), {}};
  }

 private:
  const medicine::AnalysisConfig config_;
};

PIPELINED_PLUGIN(Analysis, "medicine_analysis", PIPELINED_PLUGINS_VERSION, "analysis", "serial")

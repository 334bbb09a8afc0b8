// Plugin medicine_analysis: stage "analysis", variant "serial" (one chat call).
#include "common/medicine.h"

namespace medicine = pipelined::plugins::medicine;

class Analysis : public pipelined::sdk::AsyncStage {
 public:
  explicit Analysis(const nlohmann::json& config) : config_(medicine::AnalysisConfig::from(config, "medicine_analysis")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await medicine::analyze(input.json, ctx, config_);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const medicine::AnalysisConfig config_;
};

PIPELINED_PLUGIN(Analysis, "medicine_analysis", PIPELINED_PLUGINS_VERSION, "analysis", "serial")

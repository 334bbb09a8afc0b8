// Plugin medicine_drugs: stage "drugs", variant "serial" (the SQLite query has nothing to parallelise).
#include "common/medicine.h"

namespace medicine = pipelined::plugins::medicine;

class Drugs : public pipelined::sdk::Stage {
 public:
  explicit Drugs(const nlohmann::json& config) : config_(medicine::DrugsConfig::from(config, "medicine_drugs")) {
    medicine::check_database(config_);
  }
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& /*input*/, pipelined::sdk::Context& ctx) override {
    ctx.throw_if_cancelled();
    return {medicine::query_drugs(config_), {}};
  }

 private:
  const medicine::DrugsConfig config_;
};

PIPELINED_PLUGIN(Drugs, "medicine_drugs", PIPELINED_PLUGINS_VERSION, "drugs", "serial")

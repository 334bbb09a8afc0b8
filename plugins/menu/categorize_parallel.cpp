// Plugin menu_categorize_parallel: stage "categorize", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class CategorizeParallel : public pipelined::sdk::Stage {
 public:
  explicit CategorizeParallel(const nlohmann::json& config) : config_(menu::CategorizeConfig::from(config, "menu_categorize_parallel")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {menu::categorize(input.json, ctx, config_, Schedule::Parallel), {}};
  }

 private:
  const menu::CategorizeConfig config_;
};

PIPELINED_PLUGIN(CategorizeParallel, "menu_categorize_parallel", PIPELINED_PLUGINS_VERSION, "categorize", "parallel")

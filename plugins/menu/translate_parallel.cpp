// Plugin menu_translate_parallel: stage "translate", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class TranslateParallel : public pipelined::sdk::Stage {
 public:
  explicit TranslateParallel(const nlohmann::json& config) : config_(menu::TranslateConfig::from(config, "menu_translate_parallel")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {menu::translate(input.json, ctx, config_, Schedule::Parallel), {}};
  }

 private:
  const menu::TranslateConfig config_;
};

PIPELINED_PLUGIN(TranslateParallel, "menu_translate_parallel", PIPELINED_PLUGINS_VERSION, "translate", "parallel")

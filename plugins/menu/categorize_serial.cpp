// Plugin menu_categorize_serial: stage "categorize", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class CategorizeSerial : public pipelined::sdk::Stage {
 public:
  explicit CategorizeSerial(const nlohmann::json& config) : config_(menu::CategorizeConfig::from(config, "menu_categorize_serial")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {menu::categorize(input.json, ctx, config_, Schedule::Serial), {}};
  }

 private:
  const menu::CategorizeConfig config_;
};

PIPELINED_PLUGIN(CategorizeSerial, "menu_categorize_serial", PIPELINED_PLUGINS_VERSION, "categorize", "serial")

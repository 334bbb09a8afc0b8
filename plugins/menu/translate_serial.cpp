// Plugin menu_translate_serial: stage "translate", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class TranslateSerial : public pipelined::sdk::Stage {
 public:
  explicit TranslateSerial(const nlohmann::json& config) : config_(menu::TranslateConfig::from(config, "menu_translate_serial")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {menu::translate(input.json, ctx, config_, Schedule::Serial), {}};
  }

 private:
  const menu::TranslateConfig config_;
};

PIPELINED_PLUGIN(TranslateSerial, "menu_translate_serial", PIPELINED_PLUGINS_VERSION, "translate", "serial")

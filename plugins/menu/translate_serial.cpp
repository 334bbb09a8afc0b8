// Plugin menu_translate_serial: stage "translate", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class TranslateSerial : public pipelined::sdk::AsyncStage {
 public:
  explicit TranslateSerial(const nlohmann::json& config) : config_(menu::TranslateConfig::from(config, "menu_translate_serial")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::translate(input.json, ctx, config_, Schedule::Serial);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::TranslateConfig config_;
};

PIPELINED_PLUGIN(TranslateSerial, "menu_translate_serial", PIPELINED_PLUGINS_VERSION, "translate", "serial")

// Plugin menu_categorize_serial: stage "categorize", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class CategorizeSerial : public pipelined::sdk::AsyncStage {
 public:
  explicit CategorizeSerial(const nlohmann::json& config) : config_(menu::CategorizeConfig::from(config, "menu_categorize_serial")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::categorize(input.json, ctx, config_, Schedule::Serial);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::CategorizeConfig config_;
};

PIPELINED_PLUGIN(CategorizeSerial, "menu_categorize_serial", PIPELINED_PLUGINS_VERSION, "categorize", "serial")

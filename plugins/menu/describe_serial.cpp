// Plugin menu_describe_serial: stage "describe", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class DescribeSerial : public pipelined::sdk::AsyncStage {
 public:
  explicit DescribeSerial(const nlohmann::json& config) : config_(menu::DescribeConfig::from(config, "menu_describe_serial")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::describe(input.json, ctx, config_, Schedule::Serial);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::DescribeConfig config_;
};

PIPELINED_PLUGIN(DescribeSerial, "menu_describe_serial", PIPELINED_PLUGINS_VERSION, "describe", "serial")

// Plugin menu_describe_parallel: stage "describe", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class DescribeParallel : public pipelined::sdk::Stage {
 public:
  explicit DescribeParallel(const nlohmann::json& config) : config_(menu::DescribeConfig::from(config, "menu_describe_parallel")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    return {menu::describe(input.json, ctx, config_, Schedule::Parallel), {}};
  }

 private:
  const menu::DescribeConfig config_;
};

PIPELINED_PLUGIN(DescribeParallel, "menu_describe_parallel", PIPELINED_PLUGINS_VERSION, "describe", "parallel")

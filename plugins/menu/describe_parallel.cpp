// Plugin menu_describe_parallel: stage "describe", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class DescribeParallel : public pipelined::sdk::AsyncStage {
 public:
  explicit DescribeParallel(const nlohmann::json& config) : config_(menu::DescribeConfig::from(config, "menu_describe_parallel")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::describe(input.json, ctx, config_, Schedule::Parallel);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::DescribeConfig config_;
};

PIPELINED_PLUGIN(DescribeParallel, "menu_describe_parallel", PIPELINED_PLUGINS_VERSION, "describe", "parallel")

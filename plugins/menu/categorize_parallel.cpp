// Plugin menu_categorize_parallel: stage "categorize", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class CategorizeParallel : public pipelined::sdk::AsyncStage {
 public:
  explicit CategorizeParallel(const nlohmann::json& config) : config_(menu::CategorizeConfig::from(config, "menu_categorize_parallel")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::categorize(input.json, ctx, config_, Schedule::Parallel);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::CategorizeConfig config_;
};

PIPELINED_PLUGIN(CategorizeParallel, "menu_categorize_parallel", PIPELINED_PLUGINS_VERSION, "categorize", "parallel")

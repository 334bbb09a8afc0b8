// Plugin menu_translate_parallel: stage "translate", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class TranslateParallel : public pipelined::sdk::AsyncStage {
 public:
  explicit TranslateParallel(const nlohmann::json& config) : config_(menu::TranslateConfig::from(config, "menu_translate_parallel")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::translate(input.json, ctx, config_, Schedule::Parallel);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::TranslateConfig config_;
};

PIPELINED_PLUGIN(TranslateParallel, "menu_translate_parallel", PIPELINED_PLUGINS_VERSION, "translate", "parallel")

// Plugin menu_images_parallel: stage "images", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class ImagesParallel : public pipelined::sdk::AsyncStage {
 public:
  explicit ImagesParallel(const nlohmann::json& config) : config_(menu::ImagesConfig::from(config, "menu_images_parallel")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& /*input: items arrive as a stream*/, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::images(ctx, config_, Schedule::Parallel);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::ImagesConfig config_;
};

PIPELINED_PLUGIN(ImagesParallel, "menu_images_parallel", PIPELINED_PLUGINS_VERSION, "images", "parallel")

// Plugin menu_images_parallel: stage "images", variant "parallel".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class ImagesParallel : public pipelined::sdk::Stage {
 public:
  explicit ImagesParallel(const nlohmann::json& config) : config_(menu::ImagesConfig::from(config, "menu_images_parallel")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& /*input: items arrive as a stream*/, pipelined::sdk::Context& ctx) override {
    return {menu::images(ctx, config_, Schedule::Parallel), {}};
  }

 private:
  const menu::ImagesConfig config_;
};

PIPELINED_PLUGIN(ImagesParallel, "menu_images_parallel", PIPELINED_PLUGINS_VERSION, "images", "parallel")

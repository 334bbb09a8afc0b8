// Plugin menu_images_serial: stage "images", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class ImagesSerial : public pipelined::sdk::AsyncStage {
 public:
  explicit ImagesSerial(const nlohmann::json& config) : config_(menu::ImagesConfig::from(config, "menu_images_serial")) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& /*input: items arrive as a stream*/, pipelined::sdk::Context& ctx) override {
    // Not co_await inside a braced initializer: GCC 12 mishandles the temporaries there.
    nlohmann::json output = co_await menu::images(ctx, config_, Schedule::Serial);
    co_return pipelined::sdk::Payload{std::move(output), {}};
  }

 private:
  const menu::ImagesConfig config_;
};

PIPELINED_PLUGIN(ImagesSerial, "menu_images_serial", PIPELINED_PLUGINS_VERSION, "images", "serial")

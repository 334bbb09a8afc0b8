// Plugin menu_images_serial: stage "images", variant "serial".
#include "common/menu.h"

namespace menu = pipelined::plugins::menu;
using pipelined::plugins::Schedule;

class ImagesSerial : public pipelined::sdk::Stage {
 public:
  explicit ImagesSerial(const nlohmann::json& config) : config_(menu::ImagesConfig::from(config, "menu_images_serial")) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& /*input: items arrive as a stream*/, pipelined::sdk::Context& ctx) override {
    return {menu::images(ctx, config_, Schedule::Serial), {}};
  }

 private:
  const menu::ImagesConfig config_;
};

PIPELINED_PLUGIN(ImagesSerial, "menu_images_serial", PIPELINED_PLUGINS_VERSION, "images", "serial")

// test_throw: run() throws a plain std::runtime_error. test_throw_create: the constructor throws.
// The SDK turns both into error results; nothing may escape into the daemon.
#include <pipelined/sdk.hpp>

#include <stdexcept>

namespace {
class Throwing : public pipelined::sdk::Stage {
 public:
  explicit Throwing(const nlohmann::json&) {
#ifdef TEST_THROW_IN_CONSTRUCTOR
    throw std::runtime_error("test_throw_create: constructor refuses");
#endif
  }
  pipelined::sdk::Payload run(const pipelined::sdk::Payload&, pipelined::sdk::Context&) override {
    throw std::runtime_error("test_throw: run throws");
  }
};
}  // namespace

PIPELINED_PLUGIN(Throwing, TEST_PLUGIN_NAME, "1.0.0", TEST_STAGE, "serial")

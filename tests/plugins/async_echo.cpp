// test_async_echo: an AsyncStage (stage "echo", variant "serial") whose output is its input. Its
// descriptor requires PL_SERVICES_ASYNC_RUNS, so a host without asynchronous runs refuses it at load.
#include <pipelined/sdk.hpp>

namespace {
class AsyncEcho : public pipelined::sdk::AsyncStage {
 public:
  explicit AsyncEcho(const nlohmann::json&) {}
  pipelined::sdk::Task<pipelined::sdk::Payload> run(const pipelined::sdk::Payload& input, pipelined::sdk::Context&) override {
    co_return input;
  }
};
}  // namespace

PIPELINED_PLUGIN(AsyncEcho, "test_async_echo", "1.0.0", "echo", "serial")

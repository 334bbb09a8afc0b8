// test_versioned_v1 / _v2: the same plugin built twice with VERSION 1 and 2 (stage "swap"), for hot
// swap tests: output {"version": "<VERSION>"} plus the input. Config sleep_ms keeps runs in flight.
#include <pipelined/sdk.hpp>

#include <chrono>
#include <thread>

namespace {
class Versioned : public pipelined::sdk::Stage {
 public:
  explicit Versioned(const nlohmann::json& config) : sleep_ms_(config.value("sleep_ms", 0)) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload& input, pipelined::sdk::Context&) override {
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    pipelined::sdk::Payload out;
    out.json = input.json.is_object() ? input.json : nlohmann::json::object();
    out.json["version"] = VERSION;
    return out;
  }

 private:
  int sleep_ms_;
};
}  // namespace

PIPELINED_PLUGIN(Versioned, "test_versioned", VERSION ".0.0", "swap", "serial")

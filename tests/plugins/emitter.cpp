// test_emitter (stage "emit"): emits config.count items, config.interval_ms apart, each
// {"index": i, "emitted_at_us": steady-clock µs}; then outputs {"count": n, "ended_at_us": µs}.
#include <pipelined/sdk.hpp>

#include <chrono>
#include <thread>

namespace {
long long now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Emitter : public pipelined::sdk::Stage {
 public:
  explicit Emitter(const nlohmann::json& config)
      : count_(config.value("count", 3)), interval_ms_(config.value("interval_ms", 10)) {}
  pipelined::sdk::Payload run(const pipelined::sdk::Payload&, pipelined::sdk::Context& ctx) override {
    for (int i = 0; i < count_; ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms_));
      ctx.throw_if_cancelled();
      pipelined::sdk::Payload item;
      item.json = {{"index", i}, {"emitted_at_us", now_us()}};
      ctx.emit(item);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms_));
    pipelined::sdk::Payload out;
    out.json = {{"count", count_}, {"ended_at_us", now_us()}};
    return out;
  }

 private:
  int count_;
  int interval_ms_;
};
}  // namespace

PIPELINED_PLUGIN(Emitter, "test_emitter", "1.0.0", "emit", "serial")

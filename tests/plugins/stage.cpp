// The configurable test stage, compiled into several plugins that differ in stage and variant name
// (TEST_PLUGIN_NAME, TEST_STAGE, TEST_VARIANT; see CMakeLists.txt). Config keys, all optional:
//   output: {...}       merged into the output (output = input JSON + this + plugin fields)
//   sleep_ms: N         sleeps first, in 2 ms slices, stopping early when cancelled
//   fail: true          fails every run (test_fail's default)
//   fail_every: N       fails every N-th run of this instance (1-based: runs N, 2N, ...)
//   error_class: "x"    class of the failure (default "upstream")
//   allocate_mb: N      holds N MiB for the duration of the run (memory attribution tests)
// The input JSON may override sleep_ms and fail per request with "<stage>_sleep_ms" / "<stage>_fail".
#include <pipelined/sdk.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#ifndef TEST_DEFAULT_FAIL
#define TEST_DEFAULT_FAIL false
#endif

namespace {
using pipelined::sdk::Context;
using pipelined::sdk::Payload;
using pipelined::sdk::StageError;

class TestStage : public pipelined::sdk::Stage {
 public:
  explicit TestStage(const nlohmann::json& config)
      : output_(config.value("output", nlohmann::json::object())),
        sleep_ms_(config.value("sleep_ms", 0)),
        fail_(config.value("fail", TEST_DEFAULT_FAIL)),
        fail_every_(config.value("fail_every", 0)),
        error_class_(config.value("error_class", std::string(PL_ERR_UPSTREAM))),
        allocate_mb_(config.value("allocate_mb", 0)) {}

  Payload run(const Payload& input, Context& ctx) override {
    const std::string stage = TEST_STAGE;
    const int sleep_ms = input.json.value(stage + "_sleep_ms", sleep_ms_);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(sleep_ms);
    while (std::chrono::steady_clock::now() < until) {
      if (ctx.cancelled()) throw StageError(PL_ERR_TIMEOUT, "cancelled while sleeping");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const long n = ++runs_;
    if (input.json.value(stage + "_fail", fail_) || (fail_every_ > 0 && n % fail_every_ == 0))
      throw StageError(error_class_, std::string(TEST_PLUGIN_NAME) + " failed as configured");
    std::vector<char> held(static_cast<std::size_t>(allocate_mb_) << 20, 'm');

    Payload out;
    out.json = input.json.is_object() ? input.json : nlohmann::json::object();
    for (const auto& [k, v] : output_.items()) out.json[k] = v;
    out.json["plugin"] = TEST_PLUGIN_NAME;
    out.json["plugin_version"] = TEST_PLUGIN_VERSION;
    out.json["variant"] = TEST_VARIANT;
    out.json["held_bytes"] = held.size();
    out.attachments = input.attachments;
    return out;
  }

 private:
  nlohmann::json output_;
  int sleep_ms_;
  bool fail_;
  long fail_every_;
  std::string error_class_;
  int allocate_mb_;
  std::atomic<long> runs_{0};
};
}  // namespace

PIPELINED_PLUGIN(TestStage, TEST_PLUGIN_NAME, TEST_PLUGIN_VERSION, TEST_STAGE, TEST_VARIANT)

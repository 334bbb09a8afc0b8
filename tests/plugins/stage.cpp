// The configurable test stage, compiled into several plugins that differ in stage and variant name
// (TEST_PLUGIN_NAME, TEST_STAGE, TEST_VARIANT; see CMakeLists.txt). Config keys, all optional:
//   output: {...}       merged into the output (output = input JSON + this + plugin fields)
//   sleep_ms: N         sleeps first, in 2 ms slices, stopping early when cancelled
//   sleep_sigma: s      the sleep is lognormal: median sleep_ms, sigma s of its logarithm (decision tests)
//   fail: true          fails every run (test_fail's default)
//   fail_every: N       fails every N-th run of this instance (1-based: runs N, 2N, ...)
//   error_class: "x"    class of the failure (default "upstream")
//   allocate_mb: N      holds N MiB for the duration of the run (memory attribution tests), taken
//                       1 MiB at a time, stopping when cancelled; "<stage>_allocate_mb" per request
//   hold_mb: N          holds N MiB for the instance's life, taken in create() (instance memory tests)
//   misbehave: "segfault" | "abort" | "hang" | "allocate"   what a buggy candidate does (isolation
//                       tests): raise SIGSEGV, abort(), never return (ignoring cancellation), or
//                       allocate without bound (until operator new fails, at most 8 GiB)
//   misbehave_every: N  misbehaves on every N-th run only (default 1: every run)
//   call_provider: "p"  one POST to provider p's call_path (default "/chat/completions") per run,
//                       waited for; its failure fails the run with its class (provider limit tests)
// The input JSON may override sleep_ms, fail and misbehave per request with "<stage>_sleep_ms",
// "<stage>_fail" and "<stage>_<variant>_misbehave" (by variant, so a fallback to stable does not
// misbehave too).
#include <pipelined/sdk.hpp>

#include <atomic>
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <cmath>
#include <random>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
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
        sleep_ms_(config.value("sleep_ms", 0.0)),
        sleep_sigma_(config.value("sleep_sigma", 0.0)),
        fail_(config.value("fail", TEST_DEFAULT_FAIL)),
        fail_every_(config.value("fail_every", 0)),
        error_class_(config.value("error_class", std::string(PL_ERR_UPSTREAM))),
        allocate_mb_(config.value("allocate_mb", 0)),
        misbehave_(config.value("misbehave", std::string())),
        misbehave_every_(config.value("misbehave_every", 1L)),
        held_(static_cast<std::size_t>(config.value("hold_mb", 0)) << 20, 1),
        call_provider_(config.value("call_provider", std::string())),
        call_path_(config.value("call_path", std::string("/chat/completions"))) {}

  Payload run(const Payload& input, Context& ctx) override {
    const std::string stage = TEST_STAGE;
    const double sleep_ms = input.json.value(stage + "_sleep_ms", sleep_ms_);
    double sleep_us = 1000.0 * sleep_ms;
    if (sleep_sigma_ > 0) {
      thread_local std::mt19937_64 random{std::random_device{}()};
      sleep_us *= std::exp(std::normal_distribution<double>(0, sleep_sigma_)(random));
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<long>(sleep_us));
    for (auto now = std::chrono::steady_clock::now(); now < until; now = std::chrono::steady_clock::now()) {
      if (ctx.cancelled()) throw StageError(PL_ERR_TIMEOUT, "cancelled while sleeping");
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(2)));
    }
    const long n = ++runs_;
    const std::string misbehave = input.json.value(stage + "_" TEST_VARIANT "_misbehave", misbehave_);
    if (!misbehave.empty() && misbehave_every_ > 0 && n % misbehave_every_ == 0) misbehave_now(misbehave);
    if (input.json.value(stage + "_fail", fail_) || (fail_every_ > 0 && n % fail_every_ == 0))
      throw StageError(error_class_, std::string(TEST_PLUGIN_NAME) + " failed as configured");
    if (!call_provider_.empty()) call_provider(ctx);
    // 1 MiB at a time, checking cancellation like a stage that builds a large result should: the
    // daemon's per-request memory cap cancels the request when it is passed.
    const int allocate_mb = input.json.value(stage + "_allocate_mb", allocate_mb_);
    std::vector<std::unique_ptr<char[]>> chunks;
    for (int i = 0; i < allocate_mb; ++i) {
      if (ctx.cancelled()) throw StageError(PL_ERR_TIMEOUT, "cancelled while allocating");
      chunks.emplace_back(new char[1 << 20]);
      std::memset(chunks.back().get(), 'm', 1 << 20);
    }

    Payload out;
    out.json = input.json.is_object() ? input.json : nlohmann::json::object();
    for (const auto& [k, v] : output_.items()) out.json[k] = v;
    out.json["plugin"] = TEST_PLUGIN_NAME;
    out.json["plugin_version"] = TEST_PLUGIN_VERSION;
    out.json["variant"] = TEST_VARIANT;
    out.json["held_bytes"] = chunks.size() << 20;
    out.attachments = input.attachments;
    return out;
  }

 private:
  // The host's http_send, waited for on this thread (a test stage; real stages use RequestSet).
  void call_provider(Context& ctx) const {
    struct Wait {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      int status = 0;
      std::string error_class, error;
    };
    auto wait = std::make_shared<Wait>();
    static const char kBody[] = R"({"model":"m","messages":[{"role":"user","content":"ping"}]})";
    pl_http_request req{call_provider_.c_str(), "POST", call_path_.c_str(), nullptr, 0, kBody, sizeof kBody - 1, 0};
    auto* held = new std::shared_ptr<Wait>(wait);
    auto callback = [](void* user, const pl_http_response* r) {
      std::unique_ptr<std::shared_ptr<Wait>> w(static_cast<std::shared_ptr<Wait>*>(user));
      std::lock_guard<std::mutex> lock((*w)->mu);
      (*w)->status = r->status;
      if (r->error_class) (*w)->error_class = r->error_class;
      if (r->error) (*w)->error = r->error;
      (*w)->done = true;
      (*w)->cv.notify_all();
    };
    if (ctx.host()->http_send(ctx.raw(), &req, callback, held) != PL_OK) {
      delete held;
      throw StageError(PL_ERR_INTERNAL, "no outbound HTTP client");
    }
    std::unique_lock<std::mutex> lock(wait->mu);
    wait->cv.wait(lock, [&] { return wait->done; });
    if (!wait->error_class.empty()) throw StageError(wait->error_class, wait->error);
  }

  static void misbehave_now(const std::string& how) {
    if (how == "segfault") std::raise(SIGSEGV);
    if (how == "abort") std::abort();
    if (how == "hang")
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    if (how == "allocate") {
      std::vector<std::unique_ptr<char[]>> held;
      for (int i = 0; i < 128; ++i) {  // 128 x 64 MiB, touched so it is resident
        held.emplace_back(new char[64 << 20]);
        std::memset(held.back().get(), 1, 64 << 20);
      }
    }
  }

  nlohmann::json output_;
  double sleep_ms_;
  double sleep_sigma_;
  bool fail_;
  long fail_every_;
  std::string error_class_;
  int allocate_mb_;
  std::string misbehave_;
  long misbehave_every_;
  std::vector<char> held_;  // hold_mb: written to (value 1), so resident as well as allocated
  std::atomic<long> runs_{0};
  std::string call_provider_, call_path_;
};
}  // namespace

PIPELINED_PLUGIN(TestStage, TEST_PLUGIN_NAME, TEST_PLUGIN_VERSION, TEST_STAGE, TEST_VARIANT)

#include "daemon/engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "daemon/memory/memory_account.h"

namespace pipelined::engine {
namespace {

using sdk::Context;
using sdk::StageError;

long long now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

// Output = input + config.output + {"<name>_started_us", "<name>_ended_us"}, after sleep_ms
// (cancellable); fails with config.error_class when config.fail; throws when config.throw.
class TestStage : public sdk::Stage {
 public:
  explicit TestStage(const nlohmann::json& c) : c_(c) {}
  Payload run(const Payload& input, Context& ctx) override {
    const std::string name = c_.value("name", "stage");
    const long long started = now_us();
    const auto until = Clock::now() + std::chrono::milliseconds(c_.value("sleep_ms", 0));
    while (Clock::now() < until) {
      if (ctx.cancelled() && !c_.value("ignore_cancel", false)) throw StageError(PL_ERR_TIMEOUT, "cancelled");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (c_.value("throw", false)) throw std::runtime_error("plugin bug");
    if (c_.value("fail", false)) throw StageError(c_.value("error_class", "upstream"), name + " failed");
    std::vector<char> held(static_cast<std::size_t>(c_.value("allocate_mb", 0)) << 20, 'x');
    Payload out;
    out.json = input.json.is_object() ? input.json : nlohmann::json::object();
    const nlohmann::json extra = c_.value("output", nlohmann::json::object());
    for (const auto& [k, v] : extra.items()) out.json[k] = v;
    out.json[name + "_started_us"] = started;
    out.json[name + "_ended_us"] = now_us();
    out.json[name + "_held"] = held.size();
    return out;
  }

 private:
  nlohmann::json c_;
};

class Emitter : public sdk::Stage {
 public:
  explicit Emitter(const nlohmann::json& c) : count_(c.value("count", 3)), interval_ms_(c.value("interval_ms", 20)) {}
  Payload run(const Payload&, Context& ctx) override {
    for (int i = 0; i < count_; ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms_));
      Payload item;
      item.json = {{"index", i}, {"emitted_at_us", now_us()}};
      ctx.emit(item);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms_));
    Payload out;
    out.json = {{"ended_at_us", now_us()}};
    return out;
  }

 private:
  int count_, interval_ms_;
};

class Reader : public sdk::Stage {
 public:
  explicit Reader(const nlohmann::json&) {}
  Payload run(const Payload&, Context& ctx) override {
    Payload out, item;
    out.json["items"] = nlohmann::json::array();
    while (ctx.next_item(item)) {
      item.json["received_at_us"] = now_us();
      out.json["items"].push_back(item.json);
    }
    return out;
  }
};

// Reads its input stream as a coroutine: no thread waits between items (poll_item + wake + post).
class AsyncReader : public sdk::AsyncStage {
 public:
  explicit AsyncReader(const nlohmann::json&) {}
  sdk::Task<Payload> run(const Payload&, Context& ctx) override {
    Payload out;
    out.json["items"] = nlohmann::json::array();
    for (;;) {
      std::optional<Payload> item = co_await ctx.next_item_async();
      if (!item) break;
      item->json["received_at_us"] = now_us();
      out.json["items"].push_back(item->json);
    }
    co_return out;
  }
};

// An asynchronous stage without network, on the raw ABI: run() returns PL_PENDING and a thread of
// the test completes the run after config wait_ms (giving up early when cancelled, unless
// ignore_cancel), or before run() returns with complete_inline. Counts the runs pending at once.
struct AsyncTimer {
  struct Config {
    int wait_ms = 0;
    bool ignore_cancel = false, complete_inline = false;
  };
  static inline const pl_host_services* host = nullptr;
  static inline std::atomic<int> pending{0}, peak{0};
  static inline std::mutex mu;
  static inline std::vector<std::thread> threads;

  static void join_all() {
    std::vector<std::thread> ts;
    {
      std::lock_guard lock(mu);
      ts.swap(threads);
    }
    for (auto& t : ts) t.join();
  }
  static void finish(pl_run_context* ctx, const Config& c) {
    const std::string json = R"({"async":true})";
    const pl_payload out{json.data(), json.size(), nullptr, 0};
    if (host->is_cancelled(ctx) && !c.ignore_cancel) {
      host->set_error(ctx, PL_ERR_TIMEOUT, "cancelled");
      --pending;
      host->complete(ctx, PL_ERROR);
      return;
    }
    host->set_output(ctx, &out);
    --pending;
    host->complete(ctx, PL_OK);
  }
  static void* create(const char* json, size_t size, const pl_host_services* h, pl_error*) {
    host = h;
    const auto j = nlohmann::json::parse(json, json + size);
    return new Config{j.value("wait_ms", 0), j.value("ignore_cancel", false), j.value("complete_inline", false)};
  }
  static int run(void* instance, pl_run_context* ctx, const pl_payload*) {
    const Config c = *static_cast<Config*>(instance);
    const int now = ++pending;
    for (int p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {
    }
    if (c.complete_inline) {
      finish(ctx, c);
      return PL_PENDING;
    }
    std::lock_guard lock(mu);
    threads.emplace_back([ctx, c] {
      const auto until = Clock::now() + std::chrono::milliseconds(c.wait_ms);
      while (Clock::now() < until && (c.ignore_cancel || !host->is_cancelled(ctx)))
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      finish(ctx, c);
    });
    return PL_PENDING;
  }
  static void destroy(void* instance) { delete static_cast<Config*>(instance); }
};

template <class T>
constexpr pl_plugin_descriptor descriptor_of(const char* name) {
  return {PL_ABI_VERSION, sizeof(pl_plugin_descriptor), name, "1.0.0", "any", "any",
          &sdk::detail::create<T>, &sdk::detail::run, &sdk::detail::destroy};
}
const pl_plugin_descriptor kTestStage = descriptor_of<TestStage>("test_stage");
const pl_plugin_descriptor kEmitter = descriptor_of<Emitter>("emitter");
const pl_plugin_descriptor kReader = descriptor_of<Reader>("reader");
const pl_plugin_descriptor kAsyncReader = descriptor_of<AsyncReader>("async_reader");
const pl_plugin_descriptor kAsyncTimer = {PL_ABI_VERSION, sizeof(pl_plugin_descriptor), "async_timer", "1.0.0", "any", "any",
                                          &AsyncTimer::create, &AsyncTimer::run, &AsyncTimer::destroy};

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : pool_(8), engine_(pool_, nullptr) {
    AsyncTimer::pending = 0;
    AsyncTimer::peak = 0;
  }
  // The timer threads end their runs; the engine's destructor then finds every context released.
  void TearDown() override { AsyncTimer::join_all(); }

  // Builds a PluginSet in process from a YAML config whose variants name "test_stage", "emitter"
  // or "reader" as their plugin.
  std::shared_ptr<const plugin_host::PluginSet> plugins(const std::string& yaml) {
    auto loaded = config::load_string(yaml);
    EXPECT_TRUE(loaded.errors.empty()) << (loaded.errors.empty() ? "" : loaded.errors[0].to_string());
    auto set = std::make_shared<plugin_host::PluginSet>();
    set->config = loaded.config;
    for (const auto& p : loaded.config->pipelines) {
      for (const auto& s : p.stages) {
        for (const auto& v : s.variants) {
          const pl_plugin_descriptor* d = v.plugin == "emitter"        ? &kEmitter
                                          : v.plugin == "reader"       ? &kReader
                                          : v.plugin == "async_reader" ? &kAsyncReader
                                          : v.plugin == "async_timer"  ? &kAsyncTimer
                                                                       : &kTestStage;
          const std::string c = v.config.dump();
          pl_error err{};
          void* instance = d->create(c.data(), c.size(), engine_.services(), &err);
          EXPECT_NE(instance, nullptr) << err.message;
          set->instances[p.name + "/" + s.name + "/" + v.name] = std::make_shared<plugin_host::StageInstance>(nullptr, d, instance);
        }
      }
    }
    return set;
  }

  RunResult run(const std::shared_ptr<const plugin_host::PluginSet>& set, std::map<std::string, std::string> variants = {},
                std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    RunRequest r;
    r.request_id = "test";
    r.pipeline = "p";
    r.deadline = Clock::now() + deadline;
    r.input.json = {{"in", 1}};
    r.variants = std::move(variants);
    return engine_.run_sync(set, std::move(r));
  }

  static const StageRecord& record(const RunResult& r, const std::string& stage) {
    for (const auto& s : r.stages)
      if (s.stage == stage) return s;
    ADD_FAILURE() << "no record for " << stage;
    static StageRecord none;
    return none;
  }

  pool::WorkerPool pool_;
  Engine engine_;
};

TEST_F(EngineTest, IndependentStagesRunAtTheSameTime) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { name: a, sleep_ms: 100 } } }, stable: serial }
      b: { variants: { serial: { plugin: test_stage, config: { name: b, sleep_ms: 100 } } }, stable: serial }
      c: { needs: [a, b], variants: { serial: { plugin: test_stage, config: { name: c } } }, stable: serial }
)");
  const auto started = Clock::now();
  auto r = run(set);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  ASSERT_TRUE(r.ok) << r.error_message;
  // The proof is in the stages' own clocks: each started before the other ended. The wall time is
  // checked loosely (this machine is shared): about 100 ms, nowhere near the 200 ms of a serial run.
  const auto& a = r.outputs.at("a").json;
  const auto& b = r.outputs.at("b").json;
  EXPECT_LT(a["a_started_us"].get<long long>(), b["b_ended_us"].get<long long>());
  EXPECT_LT(b["b_started_us"].get<long long>(), a["a_ended_us"].get<long long>());
  EXPECT_GE(took.count(), 95);
  EXPECT_LT(took.count(), 190) << "two 100 ms stages with no path between them must overlap";
  const auto& c = r.outputs.at("c").json;
  EXPECT_TRUE(c.contains("a") && c.contains("b")) << c.dump();  // several needs: {need: output}
  EXPECT_EQ(c["a"]["in"], 1);
}

TEST_F(EngineTest, DiamondMergesInputs) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { name: a, output: { from_a: true } } } }, stable: serial }
      b: { needs: [a], variants: { serial: { plugin: test_stage, config: { name: b } } }, stable: serial }
      c: { needs: [a], variants: { serial: { plugin: test_stage, config: { name: c } } }, stable: serial }
      d: { needs: [b, c], variants: { serial: { plugin: test_stage, config: { name: d } } }, stable: serial }
)");
  auto r = run(set);
  ASSERT_TRUE(r.ok) << r.error_message;
  const auto& d = r.outputs.at("d").json;
  EXPECT_EQ(d["b"]["from_a"], true);
  EXPECT_EQ(d["c"]["from_a"], true);
  EXPECT_TRUE(d["b"].contains("b_ended_us"));
  EXPECT_GE(d["d_started_us"].get<long long>(), d["c"]["c_ended_us"].get<long long>());
  EXPECT_EQ(r.stages.size(), 4u);
}

TEST_F(EngineTest, StreamConsumerGetsItemsBeforeTheUpstreamEnds) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      emit: { variants: { serial: { plugin: emitter, config: { count: 5, interval_ms: 30 } } }, stable: serial }
      read: { needs: [emit], input: stream, variants: { serial: { plugin: reader } }, stable: serial }
)");
  auto r = run(set);
  ASSERT_TRUE(r.ok) << r.error_message;
  const auto& items = r.outputs.at("read").json["items"];
  ASSERT_EQ(items.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(items[i]["index"], i);
  const long long upstream_ended = r.outputs.at("emit").json["ended_at_us"];
  EXPECT_LT(items[0]["received_at_us"].get<long long>(), upstream_ended);
  EXPECT_GE(items[0]["received_at_us"].get<long long>(), items[0]["emitted_at_us"].get<long long>());
}

TEST_F(EngineTest, PartialResultsMarkWhatIsMissing) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { name: a } } }, stable: serial }
      b: { needs: [a], on_failure: partial, variants: { serial: { plugin: test_stage, config: { fail: true } } }, stable: serial }
      c: { needs: [b], variants: { serial: { plugin: test_stage, config: { name: c } } }, stable: serial }
      d: { needs: [a], variants: { serial: { plugin: test_stage, config: { name: d } } }, stable: serial }
)");
  auto r = run(set);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.partial);
  EXPECT_EQ(r.missing, (std::vector<std::string>{"b", "c"}));
  EXPECT_TRUE(r.outputs.count("a") && r.outputs.count("d"));
  EXPECT_EQ(record(r, "b").status, StageStatus::Failed);
  EXPECT_EQ(record(r, "b").error_class, "upstream");
  EXPECT_EQ(record(r, "c").status, StageStatus::Skipped);
}

constexpr const char* kFallbackPipeline = R"(pipelines:
  p:
    stages:
      s:
        timeout_ms: 100
        variants:
          serial:   { plugin: test_stage, config: { name: stable, output: { by: stable } } }
          failing:  { plugin: test_stage, config: { fail: true, error_class: rate_limited } }
          slow:     { plugin: test_stage, config: { sleep_ms: 2000 } }
          throwing: { plugin: test_stage, config: { throw: true } }
        stable: serial
)";

TEST_F(EngineTest, FailedCandidateFallsBackToStable) {
  auto r = run(plugins(kFallbackPipeline), {{"s", "failing"}});
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_TRUE(r.fell_back);
  EXPECT_EQ(r.outputs.at("s").json["by"], "stable");
  const auto& s = record(r, "s");
  EXPECT_EQ(s.status, StageStatus::FellBack);
  EXPECT_EQ(s.attempts, 2);
  EXPECT_EQ(s.requested_variant, "failing");
  EXPECT_EQ(s.variant, "serial");
  EXPECT_EQ(s.error_class, "rate_limited");
}

TEST_F(EngineTest, ObserverIsToldOfItemsFallbacksAndStageEndsBeforeDone) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      emit: { variants: { serial: { plugin: emitter, config: { count: 3, interval_ms: 5 } } }, stable: serial }
      read: { needs: [emit], input: stream, variants: { serial: { plugin: reader } }, stable: serial }
      s:
        variants:
          serial:  { plugin: test_stage, config: { name: stable } }
          failing: { plugin: test_stage, config: { fail: true, error_class: upstream } }
        stable: serial
)");
  std::mutex mu;
  std::vector<std::string> told;  // "<kind> <stage>"
  RunRequest r;
  r.request_id = "observed";
  r.pipeline = "p";
  r.deadline = Clock::now() + std::chrono::seconds(30);
  r.variants = {{"s", "failing"}};
  r.observer = [&](const RunEvent& e) {
    std::lock_guard lock(mu);
    if (e.kind == RunEvent::Kind::Item) told.push_back("item " + std::string(e.stage) + " " + e.item->at("index").dump());
    if (e.kind == RunEvent::Kind::StageFallingBack) told.push_back("fallback " + std::string(e.stage) + " " + e.record->error_class);
    if (e.kind == RunEvent::Kind::StageEnded) told.push_back("end " + std::string(e.stage) + " " + to_string(e.record->status));
  };
  const RunResult result = engine_.run_sync(set, std::move(r));
  ASSERT_TRUE(result.ok) << result.error_message;
  std::lock_guard lock(mu);  // run_sync returned after done: every stage end was told by then
  auto at = [&](const std::string& what) { return std::find(told.begin(), told.end(), what) - told.begin(); };
  const auto n = static_cast<long>(told.size());
  for (const char* item : {"item emit 0", "item emit 1", "item emit 2"}) EXPECT_LT(at(item), at("end emit ok")) << item;
  EXPECT_LT(at("item emit 0"), at("item emit 1"));
  EXPECT_LT(at("fallback s upstream"), at("end s fell_back"));
  EXPECT_LT(at("end read ok"), n);
  EXPECT_EQ(std::count_if(told.begin(), told.end(), [](const std::string& t) { return t.rfind("end ", 0) == 0; }), 3);
}

TEST_F(EngineTest, CandidatePastItsTimeoutFallsBack) {
  const auto started = Clock::now();
  auto r = run(plugins(kFallbackPipeline), {{"s", "slow"}});
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_LT(Clock::now() - started, std::chrono::milliseconds(1500));  // cancelled at 100 ms, not 2 s
  EXPECT_EQ(record(r, "s").status, StageStatus::FellBack);
  EXPECT_EQ(record(r, "s").error_class, "timeout");
}

TEST_F(EngineTest, PluginExceptionIsAnErrorResult) {
  auto r = run(plugins(kFallbackPipeline), {{"s", "throwing"}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(record(r, "s").error_class, "internal");
  EXPECT_EQ(record(r, "s").error_message, "plugin bug");
}

TEST_F(EngineTest, StableFailureFailsTheRequestAndSkipsDependants) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { fail: true, error_class: upstream } } }, stable: serial }
      b: { needs: [a], variants: { serial: { plugin: test_stage } }, stable: serial }
)");
  auto r = run(set);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.partial);
  EXPECT_EQ(r.error_class, "upstream");
  EXPECT_EQ(record(r, "a").attempts, 1);
  EXPECT_EQ(record(r, "b").status, StageStatus::Skipped);
}

TEST_F(EngineTest, DeadlineStopsTheRequest) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { sleep_ms: 3000 } } }, stable: serial }
      b: { needs: [a], variants: { serial: { plugin: test_stage } }, stable: serial }
)");
  const auto started = Clock::now();
  auto r = run(set, {}, std::chrono::milliseconds(50));
  EXPECT_LT(Clock::now() - started, std::chrono::milliseconds(2000));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_class, "timeout");
  EXPECT_EQ(record(r, "b").status, StageStatus::Skipped);
}

TEST_F(EngineTest, CancelFlagStopsTheRequest) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { sleep_ms: 3000 } } }, stable: serial }
)");
  RunRequest req;
  req.pipeline = "p";
  req.deadline = Clock::now() + std::chrono::seconds(30);
  auto flag = req.cancelled;
  std::thread canceller([flag] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    flag->store(true);
  });
  const auto started = Clock::now();
  auto r = engine_.run_sync(set, std::move(req));
  canceller.join();
  EXPECT_LT(Clock::now() - started, std::chrono::milliseconds(2000));
  EXPECT_FALSE(r.ok);
}

// The serial OCR waits for the drug query (`after`); the parallel one overlaps it.
TEST_F(EngineTest, VariantAfterOrdersOnlyThatVariant) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      drugs: { variants: { serial: { plugin: test_stage, config: { name: drugs, sleep_ms: 80 } } }, stable: serial }
      ocr:
        variants:
          serial:   { plugin: test_stage, after: [drugs], config: { name: ocr, sleep_ms: 80 } }
          parallel: { plugin: test_stage, config: { name: ocr, sleep_ms: 80 } }
        stable: serial
      analysis: { needs: [drugs, ocr], variants: { serial: { plugin: test_stage } }, stable: serial }
)");
  auto serial = run(set);
  ASSERT_TRUE(serial.ok);
  const auto& s = serial.outputs.at("analysis").json;
  EXPECT_GE(s["ocr"]["ocr_started_us"].get<long long>(), s["drugs"]["drugs_ended_us"].get<long long>());
  auto parallel = run(set, {{"ocr", "parallel"}});
  ASSERT_TRUE(parallel.ok);
  const auto& p = parallel.outputs.at("analysis").json;
  EXPECT_LT(p["ocr"]["ocr_started_us"].get<long long>(), p["drugs"]["drugs_ended_us"].get<long long>());
}

TEST_F(EngineTest, UnknownPipelineIsAnError) {
  RunRequest req;
  req.pipeline = "nope";
  req.deadline = Clock::now() + std::chrono::seconds(1);
  auto r = engine_.run_sync(plugins(kFallbackPipeline), std::move(req));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_class, "invalid_input");
}

TEST_F(EngineTest, ConcurrentRequestsCompleteExactlyOnce) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { name: a, sleep_ms: 2 } } }, stable: serial }
      b: { variants: { serial: { plugin: test_stage, config: { name: b } } }, stable: serial }
      c: { needs: [a, b], variants: { serial: { plugin: test_stage, config: { name: c } } }, stable: serial }
)");
  constexpr int kRequests = 200;
  std::vector<std::atomic<int>> calls(kRequests);
  std::atomic<int> ok{0}, finished{0};
  for (int i = 0; i < kRequests; ++i) {
    RunRequest req;
    req.pipeline = "p";
    req.deadline = Clock::now() + std::chrono::seconds(60);
    req.input.json = {{"i", i}};
    engine_.run(set, std::move(req), [&, i](RunResult r) {
      calls[i].fetch_add(1);
      if (r.ok && r.outputs.at("c").json["a"]["i"] == i) ok.fetch_add(1);
      finished.fetch_add(1);
    });
  }
  while (finished.load() < kRequests) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a second call would show up here
  EXPECT_EQ(ok.load(), kRequests);
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(calls[i].load(), 1) << "request " << i;
}

TEST_F(EngineTest, StagePeakBytesCountsItsAllocations) {
  if (!memory::accounting_enabled()) GTEST_SKIP() << "operator new replacement not active (sanitizer build)";
  auto set = plugins(R"(pipelines:
  p:
    stages:
      a: { variants: { serial: { plugin: test_stage, config: { name: a, allocate_mb: 10 } } }, stable: serial }
      b: { needs: [a], variants: { serial: { plugin: test_stage, config: { name: b } } }, stable: serial }
)");
  auto r = run(set);
  ASSERT_TRUE(r.ok);
  EXPECT_GE(record(r, "a").peak_bytes, 10 << 20);
  EXPECT_LT(record(r, "b").peak_bytes, 1 << 20);
  EXPECT_GE(r.peak_bytes, 10 << 20);
}

}  // namespace
}  // namespace pipelined::engine

namespace pipelined::engine {
namespace {

// The point of asynchronous runs: with one pool thread, eight runs that each wait 400 ms are all
// pending at once. A run that held its thread while waiting would keep the count at one.
TEST_F(EngineTest, PendingRunsDoNotHoldAPoolThread) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      wait: { variants: { serial: { plugin: async_timer, config: { wait_ms: 400 } } }, stable: serial }
)");
  pool::WorkerPool one_thread(1);
  Engine engine(one_thread, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<RunResult> results;
  for (int i = 0; i < 8; ++i) {
    RunRequest r;
    r.request_id = "r" + std::to_string(i);
    r.pipeline = "p";
    r.deadline = Clock::now() + std::chrono::seconds(30);
    engine.run(set, std::move(r), [&](RunResult result) {
      std::lock_guard lock(mu);
      results.push_back(std::move(result));
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return results.size() == 8; }));
  for (const auto& r : results) {
    EXPECT_TRUE(r.ok) << r.error_message;
    EXPECT_EQ(r.outputs.at("wait").json["async"], true);
  }
  // All eight start within a few ms of each other on a quiet machine; four leaves room for a noisy one.
  EXPECT_GE(AsyncTimer::peak.load(), 4) << "runs pending at once on a one-thread pool";
  lock.unlock();
  AsyncTimer::join_all();  // the timer threads are done with this engine before it goes
}

TEST_F(EngineTest, CompleteBeforeRunReturnsIsAccepted) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      wait: { variants: { serial: { plugin: async_timer, config: { complete_inline: true } } }, stable: serial }
      next: { needs: [wait], variants: { serial: { plugin: test_stage, config: { name: next } } }, stable: serial }
)");
  auto r = run(set);
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_EQ(r.outputs.at("next").json["async"], true);
}

// A candidate still pending at its stage timeout is given up (the watchdog), the stable variant
// answers, and the request ends while the abandoned run is still pending; it completes later into
// nothing (TearDown joins it, the engine's destructor waits for it).
TEST_F(EngineTest, PendingRunPastItsTimeoutIsAbandonedAndFallsBack) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      wait:
        timeout_ms: 150
        variants:
          serial: { plugin: async_timer, config: { wait_ms: 5 } }
          parallel: { plugin: async_timer, config: { wait_ms: 1500, ignore_cancel: true } }
        stable: serial
)");
  auto r = run(set, {{"wait", "parallel"}});
  ASSERT_TRUE(r.ok) << r.error_message;
  const auto& rec = record(r, "wait");
  EXPECT_EQ(rec.status, StageStatus::FellBack);
  EXPECT_EQ(rec.variant, "serial");
  EXPECT_EQ(rec.error_class, PL_ERR_TIMEOUT);
  EXPECT_NE(rec.error_message.find("stage timeout of 150 ms"), std::string::npos) << rec.error_message;
  EXPECT_EQ(AsyncTimer::pending.load(), 1) << "the abandoned candidate has not completed yet";
}

TEST_F(EngineTest, PendingRunIsAbandonedWhenTheRequestIsCancelled) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      wait: { variants: { serial: { plugin: async_timer, config: { wait_ms: 1500, ignore_cancel: true } } }, stable: serial }
)");
  RunRequest r;
  r.request_id = "cancelled";
  r.pipeline = "p";
  r.deadline = Clock::now() + std::chrono::seconds(30);
  auto flag = r.cancelled;
  std::thread canceller([flag] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    flag->store(true);
  });
  auto result = engine_.run_sync(set, std::move(r));
  canceller.join();
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error_class, PL_ERR_TIMEOUT);
  EXPECT_EQ(record(result, "wait").error_message, "request cancelled");
  EXPECT_EQ(AsyncTimer::pending.load(), 1) << "answered while the run is still pending";
}

TEST_F(EngineTest, AsyncStreamReaderGetsEveryItemInOrder) {
  auto set = plugins(R"(pipelines:
  p:
    stages:
      emit: { variants: { serial: { plugin: emitter, config: { count: 20, interval_ms: 5 } } }, stable: serial }
      read: { needs: [emit], input: stream, variants: { serial: { plugin: async_reader } }, stable: serial }
)");
  auto r = run(set);
  ASSERT_TRUE(r.ok) << r.error_message;
  const auto& items = r.outputs.at("read").json["items"];
  ASSERT_EQ(items.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(items[i]["index"], i);
  EXPECT_LT(items[0]["received_at_us"].get<long long>(), r.outputs.at("emit").json["ended_at_us"].get<long long>());
}

}  // namespace
}  // namespace pipelined::engine

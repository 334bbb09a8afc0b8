// The engine with isolated variants (daemon/isolation/supervisor.h) and real runner processes: items
// stream from one runner through the daemon into another while the producer still runs, concurrent
// runs share a runner, and a crash fails only the runs in flight in it, after which the supervisor
// starts a new runner. Runs under the sanitizers with the unit tests (no memory limit: ASan and TSan
// reserve more address space than any RLIMIT_AS would allow).
#include "daemon/config/config.h"
#include "daemon/engine/engine.h"
#include "daemon/plugin_host/plugin_host.h"
#include "daemon/pool/worker_pool.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

namespace {

namespace fs = std::filesystem;
using namespace pipelined;

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("supervisor-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "plugins");
    for (const char* p : {"test_echo", "test_echo_parallel", "test_emitter", "test_stream_reader"}) {
      const fs::path to = dir_ / "plugins" / (std::string(p) + ".so");
      fs::copy_file(fs::path(PIPELINED_TEST_PLUGIN_DIR) / (std::string(p) + ".so"), to, fs::copy_options::overwrite_existing);
      fs::permissions(to, fs::perms(0755));
    }
    const std::string isolated = "isolation: process, memory_limit_mb: 0, hang_grace_ms: 300";
    const std::string yaml = "plugin_directory: " + (dir_ / "plugins").string() + "\nstate_directory: " + (dir_ / "state").string() +
                             "\nrunner_path: " PIPELINED_RUNNER
                             "\npipelines:\n"
                             "  stream:\n    stages:\n"
                             "      emit: { variants: { serial: { plugin: test_emitter, config: { count: 4, interval_ms: 40 } },"
                             " parallel: { plugin: test_emitter, " +
                             isolated +
                             ", config: { count: 4, interval_ms: 40 } } }, stable: serial }\n"
                             "      read: { needs: [emit], input: stream, variants: { serial: { plugin: test_stream_reader },"
                             " parallel: { plugin: test_stream_reader, " +
                             isolated +
                             " } }, stable: serial }\n"
                             "  echo:\n    stages:\n"
                             "      echo: { variants: { serial: { plugin: test_echo }, parallel: { plugin: test_echo_parallel, " +
                             isolated + " } }, stable: serial }\n";
    auto loaded = config::load_string(yaml, "supervisor_test");
    ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front().to_string();
    auto errors = host_.load(loaded.config);
    ASSERT_TRUE(errors.empty()) << errors.front().to_string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  engine::RunResult run(const std::string& pipeline, std::map<std::string, std::string> variants, nlohmann::json input = {}) {
    engine::RunRequest r;
    r.request_id = "t";
    r.pipeline = pipeline;
    r.deadline = engine::Clock::now() + std::chrono::seconds(20);
    r.input.json = input.is_null() ? nlohmann::json::object() : input;
    r.variants = std::move(variants);
    return engine_.run_sync(host_.current(), std::move(r));
  }

  const isolation::IsolatedVariant& runner(const std::string& key) { return *host_.current()->instances.at(key)->isolated(); }

  fs::path dir_;
  pool::WorkerPool pool_{4};
  engine::Engine engine_{pool_, nullptr};
  plugin_host::PluginHost host_{engine_.services()};
};

TEST_F(SupervisorTest, ItemsStreamFromOneRunnerIntoAnotherWhileTheProducerRuns) {
  const auto r = run("stream", {{"emit", "parallel"}, {"read", "parallel"}});
  ASSERT_TRUE(r.ok) << r.error_class << ": " << r.error_message;
  const auto& items = r.outputs.at("read").json.at("items");
  ASSERT_EQ(items.size(), 4u);
  const auto ended = r.outputs.at("emit").json.at("ended_at_us").get<std::int64_t>();
  for (std::size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i]["index"], i);
  // The first item reached the reader's process while the emitter was still emitting (steady clocks
  // are one clock across processes on Linux).
  EXPECT_LT(items[0]["received_at_us"].get<std::int64_t>(), ended);
  // The same result, item for item, as in-process.
  const auto local = run("stream", {});
  ASSERT_TRUE(local.ok);
  EXPECT_EQ(local.outputs.at("read").json.at("items").size(), items.size());
}

TEST_F(SupervisorTest, ConcurrentRunsShareTheRunnerAndAnswerLikeInProcess) {
  std::vector<std::thread> clients;
  std::atomic<int> same{0}, different{0};
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      for (int i = 0; i < 25; ++i) {
        const nlohmann::json in = {{"n", c * 100 + i}, {"text", "ラーメン"}};
        const auto isolated = run("echo", {{"echo", "parallel"}}, in);
        auto expected = in;
        expected["plugin"] = "test_echo_parallel";
        expected["plugin_version"] = "1.0.0";
        expected["variant"] = "parallel";
        expected["held_bytes"] = 0;
        (isolated.ok && isolated.outputs.at("echo").json == expected ? same : different)++;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(same, 100);
  EXPECT_EQ(different, 0);
  EXPECT_EQ(runner("echo/echo/parallel").stats().crashes, 0u);
}

TEST_F(SupervisorTest, ACrashFailsOnlyItsRunsAndTheRunnerComesBack) {
  const int before = runner("echo/echo/parallel").stats().pid;
  const auto crashed = run("echo", {{"echo", "parallel"}}, {{"echo_parallel_misbehave", "segfault"}});
  ASSERT_TRUE(crashed.ok);  // fell back to the in-process stable variant
  ASSERT_EQ(crashed.stages.size(), 1u);
  EXPECT_EQ(crashed.stages[0].status, engine::StageStatus::FellBack);
  EXPECT_EQ(crashed.stages[0].error_class, PL_ERR_CRASHED);
  // "killed by signal 11 (SIGSEGV)"; under a sanitizer, which handles the signal itself, "exited with status N".
  EXPECT_NE(crashed.stages[0].error_message.find("the runner of echo/echo/parallel"), std::string::npos) << crashed.stages[0].error_message;
  EXPECT_EQ(crashed.outputs.at("echo").json["variant"], "serial");
  isolation::RunnerStats s;
  // The run fails as soon as its connection drops; the supervisor counts the crash when it reaps
  // the runner, which may be a moment later. Restarted after the first backoff (250 ms).
  for (int i = 0; i < 200; ++i) {
    s = runner("echo/echo/parallel").stats();
    if (s.up && s.restarts > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(s.up);
  EXPECT_EQ(s.crashes, 1u);
  EXPECT_EQ(s.restarts, 1u);
  EXPECT_NE(s.pid, before);
  const auto after = run("echo", {{"echo", "parallel"}});
  ASSERT_TRUE(after.ok);
  EXPECT_EQ(after.outputs.at("echo").json["variant"], "parallel");  // served by the new runner
}

}  // namespace

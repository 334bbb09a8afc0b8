// Candidates in runner processes (isolation: process), against the real daemon as an operator runs
// it: a candidate that segfaults, aborts, hangs or allocates without bound fails only its own
// attempts (every user answer is 200, from stable after fallback), the daemon stays up, and the
// rollout is rolled back on its own; isolated and in-process runs answer the same.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/daemon_process.h"

namespace {

using namespace pipelined::testing;
using nlohmann::json;

std::string pipeline(const std::string& name, const std::string& parallel) {
  return "  " + name + ":\n    stages:\n      echo: { variants: { serial: { plugin: test_echo }, parallel: " + parallel +
         " }, stable: serial, timeout_ms: 400 }\n";
}

class IsolationTest : public ::testing::Test {
 protected:
  // `misbehave`: what the isolated candidate of pipeline p does on every third run.
  void start(const std::string& misbehave) {
    std::filesystem::create_directories(dir_ / "plugins");
    for (const char* p : {"test_echo", "test_echo_parallel", "test_versioned_v1"}) install_plugin(dir_ / "plugins", p);
    install_plugin(dir_ / "plugins", "test_versioned_v1", "swap_candidate");
    const std::string bad = misbehave.empty() ? "" : ", config: { misbehave: " + misbehave + ", misbehave_every: 3 }";
    write_file(
        dir_ / "pipelined.yaml",
        "server: { listen: 127.0.0.1:0 }\nplugin_directory: " + dir_ / "plugins" + "\nstate_directory: " + dir_ / "state" +
            "\nrollout: { sticky_key: 'header:X-User-Id', guardrail_interval_ms: 100 }\npipelines:\n" +
            pipeline("p", "{ plugin: test_echo_parallel, isolation: process, memory_limit_mb: 512, hang_grace_ms: 200" + bad + " }") +
            pipeline("q", "{ plugin: test_echo_parallel }") +
            "  s:\n    stages:\n      swap: { variants: { serial: { plugin: test_versioned_v1 }, parallel: { plugin: swap_candidate, "
            "config: { sleep_ms: 20 },"
            " isolation: process } }, stable: serial }\n" +
            "endpoints:\n"
            "  - { method: POST, path: /p, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n"
            "  - { method: POST, path: /q, pipeline: q, request: { format: json }, response: { out: $stages.echo } }\n"
            "  - { method: POST, path: /s, pipeline: s, request: { format: json }, response: { out: $stages.swap } }\n");
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml");
    socket_ = "--socket " + dir_ / "state/admin.sock";
  }

  // n requests with distinct users; every one must answer 200. Returns how many the candidate served.
  int traffic(const std::string& path, int n, int first = 0) {
    HttpClient client(daemon_->port());
    int candidate = 0;
    for (int i = first; i < first + n; ++i) {
      auto r = client.request(http::verb::post, path, R"({"n": )" + std::to_string(i) + "}", "application/json",
                              {{"X-User-Id", "user-" + std::to_string(i)}});
      EXPECT_EQ(r.result_int(), 200) << r.body();
      candidate += r["X-Pipelined-Arm"] == "candidate";
    }
    return candidate;
  }

  json rollout_of(const std::string& name) {
    auto r = pipectl(socket_ + " status --json");
    return json::parse(r.out, nullptr, false)["rollout"]["pipelines"][name]["rollout"];
  }

  json runner_of(const std::string& name) {
    const json answer = json::parse(pipectl(socket_ + " plugins --json").out, nullptr, false);
    for (const auto& p : answer["plugins"])
      if (p["pipeline"] == name && p["variant"] == "parallel") return p;
    return json();
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::string socket_;
};

TEST_F(IsolationTest, IsolatedAndInProcessRunsAnswerTheSame) {
  start("");
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline p").code, 0);
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline q").code, 0);
  HttpClient client(daemon_->port());
  for (int i = 0; i < 20; ++i) {
    const std::string body = R"({"n": )" + std::to_string(i) + R"(, "text": "ラーメン \" \\ ok"})";
    auto isolated = client.request(http::verb::post, "/p", body);
    auto in_process = client.request(http::verb::post, "/q", body);
    ASSERT_EQ(isolated.result_int(), 200) << isolated.body();
    EXPECT_EQ(isolated["X-Pipelined-Arm"], "candidate");
    EXPECT_EQ(isolated.body(), in_process.body());
  }
  const json p = runner_of("p");
  EXPECT_EQ(p["isolation"], "process") << p.dump();
  EXPECT_TRUE(p["runner"]["up"].get<bool>()) << p.dump();
  EXPECT_NE(p["runner"]["pid"], daemon_->pid());
  EXPECT_GT(p["runner"]["rss_bytes"].get<double>(), 0) << p.dump();
  EXPECT_EQ(runner_of("q")["isolation"], "in_process");
}

TEST_F(IsolationTest, AReloadStartsANewRunnerAndTheOldOneDrainsAndExits) {
  start("");
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline s").code, 0);
  HttpClient client(daemon_->port());
  EXPECT_EQ(json::parse(client.request(http::verb::post, "/s", "{}").body())["out"]["version"], "1");
  const int old_pid = runner_of("s")["runner"]["pid"];
  std::atomic<bool> stop{false};
  std::atomic<int> served{0}, failed{0};
  std::thread load([&] {  // requests all through the swap: none may fail
    HttpClient c(daemon_->port());
    while (!stop) {
      auto r = c.request(http::verb::post, "/s", "{}");
      (r.result_int() == 200 ? served : failed)++;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  install_plugin(dir_ / "plugins", "test_versioned_v2", "swap_candidate");
  ASSERT_EQ(pipectl(socket_ + " plugins reload").code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  load.join();
  EXPECT_GT(served, 5);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(json::parse(client.request(http::verb::post, "/s", "{}").body())["out"]["version"], "2");
  const json runner = runner_of("s")["runner"];
  EXPECT_NE(runner["pid"], old_pid);
  EXPECT_EQ(runner["crashes"], 0);
  bool old_gone = false;
  for (int i = 0; i < 100 && !old_gone; ++i) {
    old_gone = ::kill(old_pid, 0) != 0;  // reaped by the daemon once it exited
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(old_gone);
}

class Misbehaving : public IsolationTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(Misbehaving, OnlyTheCandidatesOwnAttemptsFailAndItIsRolledBack) {
  const std::string how = GetParam();
  start(how);
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p").code, 0);
  const int candidate = traffic("/p", 40);  // every answer 200: the stable variant serves what the candidate could not
  EXPECT_GT(candidate, 0);
  json r;
  for (int i = 0; i < 100; ++i) {
    r = rollout_of("p");
    if (r["status"] == "rolled_back") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r["status"], "rolled_back") << how << ": " << r.dump();
  EXPECT_EQ(::kill(daemon_->pid(), 0), 0);  // the daemon is up ...
  EXPECT_EQ(traffic("/q", 10, 500), 0);     // ... and serves the other pipeline
  EXPECT_EQ(traffic("/p", 10, 600), 0);     // ... and this one, on stable only now
  const json runner = runner_of("p")["runner"];
  if (how != "allocate") {  // allocation under RLIMIT_AS fails the run's operator new: an error, not always a crash
    EXPECT_GE(runner["crashes"].get<int>(), 1) << runner.dump();
    const std::string expected = how == "segfault" ? "SIGSEGV" : how == "abort" ? "SIGABRT" : "hung";
    EXPECT_NE(runner["last_crash"].get<std::string>().find(expected), std::string::npos) << runner.dump();
    EXPECT_NE(r["reason"].get<std::string>().find("runner crash"), std::string::npos) << r.dump();
  }
  auto report = pipectl(socket_ + " report --json --pipeline p");
  const json arms = json::parse(report.out, nullptr, false)["pipelines"]["p"]["arms"];
  EXPECT_EQ(arms["candidate"].value("success_rate", 0.0), 1.0) << arms.dump();
  EXPECT_LT(arms["candidate"].value("own_success_rate", 1.0), 1.0) << arms.dump();
}

INSTANTIATE_TEST_SUITE_P(Candidates, Misbehaving, ::testing::Values("segfault", "abort", "hang", "allocate"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace

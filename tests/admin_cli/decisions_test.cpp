// The rollout controller's decisions against the running daemon, as an operator meets them: a
// candidate whose failures are hidden by fallback is rolled back; a candidate that crashes the
// daemon gets no traffic after the restart until `pipectl resume`; a report never mixes rollouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <fstream>
#include <iterator>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/daemon_process.h"

namespace {

using namespace pipelined::testing;
using nlohmann::json;

class DecisionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "plugins");
    for (const char* p : {"test_echo", "test_echo_parallel", "test_fail_parallel"}) install_plugin(dir_ / "plugins", p);
    write_file(
        dir_ / "pipelined.yaml",
        "server: { listen: 127.0.0.1:0, request_log: " + dir_ / "requests.log" + " }\nplugin_directory: " + dir_ / "plugins" + "\nstate_directory: " + dir_ / "state" +
            "\nrollout: { sticky_key: 'header:X-User-Id', guardrail_interval_ms: 100 }\n"
            "pipelines:\n  p:\n    stages:\n"
            "      echo: { variants: { serial: { plugin: test_echo }, parallel: { plugin: test_echo_parallel },"
            " broken: { plugin: test_fail_parallel } }, stable: serial, candidate: parallel }\n"
            "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n");
    start();
  }
  void start() {
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml");
    socket_ = "--socket " + dir_ / "state/admin.sock";
  }

  // n requests with distinct user keys; every one must answer 200. Returns those on the candidate.
  int traffic(int n, int first = 0) {
    HttpClient client(daemon_->port());
    int candidate = 0;
    for (int i = first; i < first + n; ++i) {
      auto r = client.request(http::verb::post, "/run", "{}", "application/json", {{"X-User-Id", "user-" + std::to_string(i)}});
      EXPECT_EQ(r.result_int(), 200) << r.body();
      candidate += r["X-Pipelined-Arm"] == "candidate";
    }
    return candidate;
  }

  json rollout_of(const std::string& pipeline = "p") {
    auto r = pipectl(socket_ + " status --json");
    EXPECT_EQ(r.code, 0) << r.out;
    return json::parse(r.out, nullptr, false)["rollout"]["pipelines"][pipeline]["rollout"];
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::string socket_;
};

TEST_F(DecisionsTest, ACandidateRescuedByFallbackIsStillRolledBack) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p --stage echo --variant broken").code, 0);
  const int candidate = traffic(100);  // every user answer is fine: stage fallback serves stable's
  EXPECT_GT(candidate, 20);
  json r;
  for (int i = 0; i < 100; ++i) {  // the guardrail runs every 100 ms
    r = rollout_of();
    if (r["status"] == "rolled_back") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r["status"], "rolled_back") << r.dump();
  EXPECT_NE(r["reason"].get<std::string>().find("candidate success 0.0 %"), std::string::npos) << r.dump();
  auto report = pipectl(socket_ + " report --pipeline p");
  EXPECT_EQ(report.code, 0) << report.out;
  EXPECT_NE(report.out.find("100.0 %"), std::string::npos) << report.out;    // what users got
  EXPECT_NE(report.out.find("guardrail"), std::string::npos) << report.out;  // the decision and who took it
  EXPECT_EQ(traffic(50, 1000), 0);
}

TEST_F(DecisionsTest, AfterACrashTheCandidateGetsNoTrafficUntilResumed) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p").code, 0);
  const int before = traffic(100);
  EXPECT_GT(before, 20);
  daemon_->stop(SIGSEGV);  // as a candidate's memory bug would
  start();
  json r = rollout_of();
  EXPECT_EQ(r["status"], "paused") << r.dump();
  EXPECT_EQ(r["percent"], 0.0);
  EXPECT_EQ(r["resume_percent"], 50.0);
  const std::string reason = r["reason"];
  EXPECT_NE(reason.find("signal 11"), std::string::npos) << reason;
  EXPECT_NE(reason.find("p/echo/parallel"), std::string::npos) << reason;  // the suspect, from the crash marker
  EXPECT_EQ(traffic(100), 0);
  daemon_->stop(SIGKILL);  // and again, before anyone looked: still nothing on the candidate
  start();
  EXPECT_EQ(rollout_of()["percent"], 0.0);
  EXPECT_EQ(traffic(50), 0);
  ASSERT_EQ(pipectl(socket_ + " resume --pipeline p").code, 0);
  r = rollout_of();
  EXPECT_EQ(r["status"], "live");
  EXPECT_EQ(r["percent"], 50.0);
  EXPECT_EQ(traffic(100), before);  // the same users as before the crash
}

// The measured case of issue 9: a stage truly 15 % faster (lognormal latency, sigma 0.5; criterion: at
// least 10 % faster) was rolled back in 7 of 15 rollouts of 1 000 requests by the old point-estimate
// rule. The sequential tests keep it: at most one wrong rollback in 20 rollouts.
TEST(DecisionsKeep, AFifteenPercentFasterCandidateIsKeptInAtLeast19Of20Rollouts) {
  TempDir dir;
  std::filesystem::create_directories(dir / "plugins");
  for (const char* p : {"test_echo", "test_echo_parallel"}) install_plugin(dir / "plugins", p);
  write_file(dir / "pipelined.yaml",
             "server: { listen: 127.0.0.1:0 }\nplugin_directory: " + dir / "plugins" + "\nstate_directory: " + dir / "state" +
                 "\nrollout: { sticky_key: 'header:X-User-Id', guardrail_interval_ms: 100 }\n"
                 "pipelines:\n  p:\n    stages:\n"
                 "      echo: { variants: { serial: { plugin: test_echo, config: { sleep_ms: 8, sleep_sigma: 0.5 } },"
                 " parallel: { plugin: test_echo_parallel, config: { sleep_ms: 6.8, sleep_sigma: 0.5 } } }, stable: serial }\n"
                 "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n");
  DaemonProcess daemon(dir / "pipelined.yaml");
  const std::string socket = "--socket " + dir / "state/admin.sock";
  int rolled_back = 0;
  std::string reasons;
  for (int rollout = 0; rollout < 20; ++rollout) {
    ASSERT_EQ(pipectl(socket + " rollout --percent 50 --pipeline p").code, 0);
    std::vector<std::thread> users;
    std::atomic<int> failed{0};
    for (int t = 0; t < 8; ++t)
      users.emplace_back([&, t] {
        HttpClient client(daemon.port());
        for (int i = t; i < 1000; i += 8) {
          auto r = client.request(http::verb::post, "/run", "{}", "application/json",
                                  {{"X-User-Id", "r" + std::to_string(rollout) + "-u" + std::to_string(i)}});
          failed += r.result_int() != 200;
        }
      });
    for (auto& u : users) u.join();
    EXPECT_EQ(failed, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // the last rows written and judged
    const json r = json::parse(pipectl(socket + " status --json").out, nullptr, false)["rollout"]["pipelines"]["p"]["rollout"];
    if (r["status"] == "rolled_back") {
      ++rolled_back;
      reasons += r.value("reason", "") + "\n";
    } else {
      ASSERT_EQ(pipectl(socket + " rollback --pipeline p").code, 0);
    }
  }
  EXPECT_LE(rolled_back, 1) << reasons;
}

TEST_F(DecisionsTest, AReportCoversOneRollout) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline p").code, 0);
  traffic(30);
  ASSERT_EQ(pipectl(socket_ + " rollback --pipeline p").code, 0);
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p --shadow 10").code, 0);
  traffic(40, 100);
  auto latest = json::parse(pipectl(socket_ + " report --json --pipeline p").out, nullptr, false)["pipelines"]["p"];
  const double n = latest["arms"]["stable"].value("requests", 0.0) + latest["arms"]["candidate"].value("requests", 0.0);
  EXPECT_EQ(n, 40) << latest.dump();
  const auto first_id = latest["rollout"]["id"].get<int>() - 1;
  auto first = json::parse(pipectl(socket_ + " report --json --rollout " + std::to_string(first_id)).out, nullptr, false)["pipelines"]["p"];
  EXPECT_EQ(first["arms"]["candidate"]["requests"], 30) << first.dump();
  EXPECT_FALSE(first["arms"].contains("stable"));
  EXPECT_EQ(pipectl(socket_ + " report --rollout 999").code, 1);
}

TEST_F(DecisionsTest, EveryRequestIsOneJsonLineInTheRequestLog) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p --stage echo --variant broken").code, 0);
  const int candidate = traffic(40);
  // A request's line is written after its response is sent: under load the last one can still be
  // on its way when the client has its answer.
  auto logged = [&] {
    std::ifstream count(dir_ / "requests.log");
    return std::count(std::istreambuf_iterator<char>(count), std::istreambuf_iterator<char>(), '\n');
  };
  for (int i = 0; i < 200 && logged() < 40; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::ifstream in(dir_ / "requests.log");
  int lines = 0, rescued = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const json j = json::parse(line);  // throws (and fails the test) on a line that is not JSON
    EXPECT_EQ(j["pipeline"], "p");
    EXPECT_EQ(j["endpoint"], "/run");
    EXPECT_EQ(j["status"], 200);
    EXPECT_TRUE(j["request_id"].is_string() && !j["request_id"].get<std::string>().empty());
    if (j["arm"] == "candidate") {
      ++rescued;
      EXPECT_TRUE(j["fell_back"].get<bool>()) << line;
      EXPECT_NE(j["own_failure"].get<std::string>().find("echo: "), std::string::npos) << line;
      EXPECT_EQ(j["variants"]["echo"], "serial") << line;  // the variant that answered
    }
  }
  EXPECT_EQ(lines, 40);
  EXPECT_EQ(rescued, candidate);
}

}  // namespace

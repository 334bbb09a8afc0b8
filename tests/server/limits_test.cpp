// The limits that protect the daemon, end to end: an endpoint's max_concurrent (503 with
// Retry-After for the requests past it) and server.max_request_memory_mb (507, class memory).
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/server/daemon_process.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "plugins");
    for (const char* p : {"test_echo", "test_sleep"}) install_plugin(dir_ / "plugins", p);
  }

  DaemonProcess& start(const std::string& server_extra) {
    write_file(dir_ / "pipelined.yaml",
               "server:\n  listen: 127.0.0.1:0\n  request_log: " + dir_ / "requests.log" + "\n" + server_extra +
                   "worker_threads: 8\nplugin_directory: " + dir_ / "plugins" + "\nstate_directory: " + dir_ / "state" +
                   "\npipelines:\n"
                   "  slow: { stages: { sleep: { variants: { serial: { plugin: test_sleep } }, stable: serial } } }\n"
                   "  grow: { stages: { echo: { variants: { serial: { plugin: test_echo } }, stable: serial } } }\n"
                   "endpoints:\n"
                   "  - { method: POST, path: /sleep, pipeline: slow, request: { format: json }, response: { out: $stages.sleep },"
                   " max_concurrent: 3 }\n"
                   "  - { method: POST, path: /grow, pipeline: grow, request: { format: json }, response: { out: $stages.echo } }\n");
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml");
    return *daemon_;
  }

  std::string metric(const std::string& series) const { return admin_metric(dir_ / "state/admin.sock", series); }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(LimitsTest, RequestsPastMaxConcurrentGet503WithRetryAfter) {
  auto& d = start("");
  std::vector<std::thread> slow;
  std::vector<int> statuses(3, 0);
  for (int i = 0; i < 3; ++i)
    slow.emplace_back(
        [&, i] { statuses[i] = HttpClient(d.port()).request(http::verb::post, "/sleep", R"({"sleep_sleep_ms": 1500})").result_int(); });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (metric("pipelined_requests_in_flight") != "pipelined_requests_in_flight 3" && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(metric("pipelined_requests_in_flight"), "pipelined_requests_in_flight 3");

  HttpClient extra(d.port());
  for (int i = 0; i < 2; ++i) {
    auto r = extra.request(http::verb::post, "/sleep", R"({"sleep_sleep_ms": 1500})");
    ASSERT_EQ(r.result_int(), 503) << r.body();
    EXPECT_EQ(r[http::field::retry_after], "1");
    EXPECT_EQ(json::parse(r.body())["error"]["status"], 503);
    EXPECT_TRUE(r.keep_alive());
  }
  // Another endpoint has its own count.
  EXPECT_EQ(HttpClient(d.port()).request(http::verb::post, "/grow", "{}").result_int(), 200);
  for (auto& t : slow) t.join();
  for (int s : statuses) EXPECT_EQ(s, 200);
  // The places are given back.
  EXPECT_EQ(extra.request(http::verb::post, "/sleep", "{}").result_int(), 200);

  EXPECT_EQ(metric(R"(pipelined_requests_total{pipeline="slow",endpoint="/sleep",arm="none",outcome="overloaded"})"),
            R"(pipelined_requests_total{pipeline="slow",endpoint="/sleep",arm="none",outcome="overloaded"} 2)");
  int overloaded = 0, ok = 0;
  // A request's log line is written just after its response is sent: read until all 7 are there.
  for (int attempt = 0; attempt < 100 && overloaded + ok < 7; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    overloaded = ok = 0;
    std::ifstream log(dir_ / "requests.log");
    for (std::string line; std::getline(log, line);) {
      const auto j = json::parse(line);
      if (j["outcome"] == "overloaded") {
        ++overloaded;
        EXPECT_EQ(j["status"], 503);
        EXPECT_EQ(j["arm"], "none");
      }
      if (j["outcome"] == "ok") ++ok;
    }
  }
  EXPECT_EQ(overloaded, 2);
  EXPECT_EQ(ok, 5);
  // Only the requests that ran were handed to the rollout's rows (the guardrails read those).
  const auto status = json::parse(admin_request(dir_ / "state/admin.sock", http::verb::get, "/admin/rollout").body());
  EXPECT_LE(status["metrics"]["written"].get<int>() + status["metrics"]["queued"].get<int>(), 5) << status.dump();
}

TEST_F(LimitsTest, ARequestPastTheMemoryCapFailsWithClassMemoryAndTheDaemonServesOn) {
  auto& d = start("  max_request_memory_mb: 64\n");
  HttpClient client(d.port());
  auto r = client.request(http::verb::post, "/grow", R"({"echo_allocate_mb": 400})");
  ASSERT_EQ(r.result_int(), 507) << r.body();
  const auto error = json::parse(r.body())["error"];
  EXPECT_EQ(error["class"], "memory");
  EXPECT_NE(error["message"].get<std::string>().find("64 MiB"), std::string::npos) << error.dump();
  // Stopped at the cap, not after the 400 MiB: the stage checks cancellation as it allocates.
  const std::string rss = metric("pipelined_process_resident_memory_bytes ");
  EXPECT_LT(std::stoll(rss.substr(rss.find(' ') + 1)), 300LL << 20) << rss;
  r = client.request(http::verb::post, "/grow", R"({"echo_allocate_mb": 16})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["out"]["held_bytes"], 16 << 20);
  EXPECT_EQ(metric(R"(pipelined_requests_total{pipeline="grow",endpoint="/grow",arm="stable",outcome="error"})"),
            R"(pipelined_requests_total{pipeline="grow",endpoint="/grow",arm="stable",outcome="error"} 1)");
}

}  // namespace
}  // namespace pipelined::testing

// Operating the daemon: Prometheus series on GET /metrics (metrics listener and admin socket, not
// the frontend), checked by promtool and scraped by a real Prometheus when installed; the deploy/
// files (alert rules, systemd unit); sd_notify READY/RELOADING/STOPPING/WATCHDOG on NOTIFY_SOCKET.
#include <gtest/gtest.h>
#include <fcntl.h>

#include <nlohmann/json.hpp>
#include <cctype>
#include <regex>

#include "tests/notify/notify_socket.h"
#include "tests/common/free_port.h"
#include "tests/common/redis_server.h"
#include "tests/common/run_command.h"
#include "tests/server/daemon_process.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kSource = PIPELINED_SOURCE_DIR;

std::string small_config(const TempDir& dir) {
  return "server:\n  listen: 127.0.0.1:0\n  io_threads: 2\nworker_threads: 4\n"
         "plugin_directory: " + dir / "plugins" + "\nstate_directory: " + dir / "state" + "\n"
         "metrics:\n  listen: 127.0.0.1:0\n"
         "pipelines:\n"
         "  p:\n    stages:\n"
         "      echo: { variants: { serial: { plugin: test_echo } }, stable: serial }\n"
         "  broken:\n    stages:\n"
         "      fail: { variants: { serial: { plugin: test_fail, config: { error_class: timeout } } }, stable: serial }\n"
         "endpoints:\n"
         "  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n"
         "  - { method: POST, path: /fail, pipeline: broken, request: { format: json }, response: { out: $stages.fail } }\n";
}

bool has_program(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// The value of the sample `series` (name and labels exactly as rendered), or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "plugins");
    for (const char* p : {"test_echo", "test_fail"}) install_plugin(dir_ / "plugins", p);
    write_file(dir_ / "pipelined.yaml", small_config(dir_));
  }
  DaemonProcess& start() {
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml");
    return *daemon_;
  }
  std::string scrape() {
    auto r = HttpClient(daemon_->metrics_port()).request(http::verb::get, "/metrics");
    EXPECT_EQ(r.result_int(), 200);
    EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
    return r.body();
  }
  // Scrapes until `series` reaches `value` (the counters move just after the response is sent).
  std::string scrape_until(const std::string& series, double value) {
    std::string text;
    for (int i = 0; i < 200 && sample(text = scrape(), series) < value; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return text;
  }
  void send_requests(int ok, int failed) {
    HttpClient client(daemon_->port());
    for (int i = 0; i < ok; ++i) ASSERT_EQ(client.request(http::verb::post, "/run", R"({"a": 1})").result_int(), 200);
    for (int i = 0; i < failed; ++i) ASSERT_EQ(client.request(http::verb::post, "/fail", "{}").result_int(), 504);
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(ObservabilityTest, MetricsCountRequestsStagesAndRollout) {
  start();
  ASSERT_NE(daemon_->metrics_port(), 0);
  send_requests(3, 1);
  HttpClient client(daemon_->port());
  EXPECT_EQ(client.request(http::verb::post, "/run", "{\"bad\": ").result_int(), 400);

  const std::string ok = R"(pipelined_requests_total{pipeline="p",endpoint="/run",arm="stable",outcome="ok"})";
  const std::string error = R"(pipelined_requests_total{pipeline="broken",endpoint="/fail",arm="stable",outcome="error"})";
  const std::string rejected = R"(pipelined_requests_total{pipeline="p",endpoint="/run",arm="none",outcome="rejected"})";
  scrape_until(ok, 3);
  scrape_until(error, 1);
  const auto text = scrape_until(rejected, 1);  // each counter moves just after its response is sent
  EXPECT_EQ(sample(text, ok), 3) << text;
  EXPECT_EQ(sample(text, error), 1) << text;
  EXPECT_EQ(sample(text, rejected), 1) << text;
  EXPECT_EQ(sample(text, R"(pipelined_request_duration_seconds_count{pipeline="p",arm="stable"})"), 3) << text;
  EXPECT_EQ(sample(text, R"(pipelined_request_duration_seconds_bucket{pipeline="p",arm="stable",le="+Inf"})"), 3) << text;
  EXPECT_EQ(sample(text, R"(pipelined_stage_duration_seconds_count{pipeline="p",stage="echo",variant="serial"})"), 3) << text;
  EXPECT_EQ(sample(text, "pipelined_requests_in_flight"), 0) << text;
  EXPECT_GT(sample(text, "pipelined_process_resident_memory_bytes"), 1e6) << text;
  EXPECT_EQ(sample(text, "pipelined_plugin_generation"), 1) << text;
  EXPECT_EQ(sample(text, R"(pipelined_rollout_candidate_share{pipeline="p"})"), 0) << text;
  EXPECT_EQ(sample(text, R"(pipelined_rollout_status{pipeline="p",status="none"})"), 1) << text;
  EXPECT_GE(sample(text, R"(pipelined_metric_rows_total{state="written",cause="none"})"), 0) << text;
  EXPECT_EQ(sample(text, R"(pipelined_metric_rows_total{state="lost",cause="queue_full"})"), 0) << text;

  // The admin socket serves the same series; the frontend does not serve them at all.
  auto admin = admin_request(dir_ / "state/admin.sock", http::verb::get, "/metrics");
  EXPECT_EQ(admin.result_int(), 200);
  EXPECT_EQ(admin[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(sample(admin.body(), ok), 3);
  EXPECT_EQ(client.request(http::verb::get, "/metrics").result_int(), 404);
  // The metrics listener serves nothing else.
  HttpClient metrics(daemon_->metrics_port());
  EXPECT_EQ(metrics.request(http::verb::get, "/admin/status").result_int(), 404);
  EXPECT_EQ(metrics.request(http::verb::post, "/metrics", "{}").result_int(), 405);
}

TEST_F(ObservabilityTest, SharedLimitGaugeFollowsRedis) {
  // shared_limits on: pipelined_provider_shared_limit_up is 1 while Redis answers, 0 within a couple of
  // seconds of it going away (the idle PING; no calls are made), 1 again when it is back.
  RedisServer redis;
  write_file(dir_ / "pipelined.yaml", small_config(dir_) +
                                          "providers:\n  sim: { base_url: http://127.0.0.1:1/v1, max_in_flight: 6 }\n"
                                          "shared_limits:\n  redis: " +
                                          redis.url() + "\n  expected_replicas: 3\n");
  start();
  const std::string up = R"(pipelined_provider_shared_limit_up{provider="sim"})";
  auto wait_for = [&](double value) {
    std::string text;
    for (int i = 0; i < 300 && sample(text = scrape(), up) != value; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return text;
  };
  std::string text = wait_for(1);
  EXPECT_EQ(sample(text, up), 1) << text;
  EXPECT_NE(text.find("# TYPE pipelined_provider_shared_limit_up gauge"), std::string::npos);
  redis.kill();
  text = wait_for(0);
  EXPECT_EQ(sample(text, up), 0) << text;
  redis.start();
  text = wait_for(1);
  EXPECT_EQ(sample(text, up), 1) << text;
}

TEST_F(ObservabilityTest, PromtoolAcceptsTheScrape) {
  if (!has_program("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  start();
  send_requests(2, 1);
  write_file(dir_ / "scrape.txt", scrape_until(R"(pipelined_requests_total{pipeline="p",endpoint="/run",arm="stable",outcome="ok"})", 2));
  const Outcome r = run("/usr/bin/promtool check metrics < " + dir_ / "scrape.txt");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "") << r.out;  // no lint findings either
}

TEST(DeployFiles, PromtoolAcceptsTheAlertRules) {
  if (!has_program("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  const Outcome r = run("/usr/bin/promtool check rules " + kSource + "/deploy/alerts.yml");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST(DeployFiles, GrafanaDashboardIsJson) {
  std::ifstream in(kSource + "/deploy/grafana-dashboard.json");
  const json d = json::parse(in, nullptr, false);
  ASSERT_FALSE(d.is_discarded());
  EXPECT_GE(d["panels"].size(), 4u);
}

TEST(DeployFiles, SystemdAnalyzeVerifiesTheUnit) {
  const std::string analyze = has_program("/usr/bin/systemd-analyze") ? "/usr/bin/systemd-analyze" : "/bin/systemd-analyze";
  if (!has_program(analyze)) GTEST_SKIP() << "systemd-analyze not installed";
  // The unit names the installed binary; verify checks that it exists, so point it at the built one.
  std::ifstream in(kSource + "/deploy/pipelined.service");
  std::string unit((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_NE(unit.find("Type=notify"), std::string::npos);
  for (const char* key : {"WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=", "PrivateTmp=yes", "User=pipelined"})
    EXPECT_NE(unit.find(key), std::string::npos) << key;
  unit = std::regex_replace(unit, std::regex("/usr/local/bin/pipelined"), PIPELINED_BINARY);
  TempDir dir;
  write_file(dir / "pipelined.service", unit);
  const Outcome r = run(analyze + " verify --man=no " + dir / "pipelined.service");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "") << r.out;  // bad values are warnings with exit code 0
  std::ifstream sysusers(kSource + "/deploy/pipelined.sysusers");
  std::string line, users;
  while (std::getline(sysusers, line)) users += line + "\n";
  EXPECT_NE(users.find("\nu pipelined "), std::string::npos) << users;
}

TEST_F(ObservabilityTest, NotifiesSystemdReadyReloadingWatchdogAndStopping) {
  NotifySocket notify(dir_ / "notify.sock");
  ::setenv("NOTIFY_SOCKET", (dir_ / "notify.sock").c_str(), 1);
  ::setenv("WATCHDOG_USEC", "300000", 1);
  start();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  EXPECT_TRUE(notify.wait_for("READY=1", std::chrono::seconds(5))) << notify.seen();
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(5))) << notify.seen();
  daemon_->signal(SIGHUP);
  EXPECT_TRUE(notify.wait_for("RELOADING=1", std::chrono::seconds(5))) << notify.seen();
  EXPECT_TRUE(notify.wait_for("READY=1", std::chrono::seconds(5))) << notify.seen();
  daemon_->signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", std::chrono::seconds(5))) << notify.seen();
  EXPECT_EQ(daemon_->stop(), 0);
}

std::string url_encoded(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

TEST_F(ObservabilityTest, PrometheusScrapesTheDaemonAndAnswersARateQuery) {
  if (!has_program("/usr/bin/prometheus")) GTEST_SKIP() << "prometheus not installed (Debian package prometheus)";
  start();
  // Prometheus cannot listen on port 0 and report the port it took.
  const int port = free_loopback_port();
  write_file(dir_ / "prometheus.yml", "global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
                                      "scrape_configs:\n  - job_name: pipelined\n    static_configs:\n"
                                      "      - targets: ['127.0.0.1:" + std::to_string(daemon_->metrics_port()) + "']\n");
  const std::string config = "--config.file=" + dir_ / "prometheus.yml", storage = "--storage.tsdb.path=" + dir_ / "tsdb",
                    listen = "--web.listen-address=127.0.0.1:" + std::to_string(port);
  const char* argv[] = {"/usr/bin/prometheus", config.c_str(), storage.c_str(), listen.c_str(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, (dir_ / "prometheus.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, const_cast<char**>(argv), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  } reaper{pid};

  const std::string query = "/api/v1/query?query=" + url_encoded("sum by (arm) (rate(pipelined_requests_total[30s]))");
  double stable_rate = 0;
  std::string last;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(45);
  while (stable_rate <= 0 && std::chrono::steady_clock::now() < until) {
    send_requests(5, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    try {
      last = HttpClient(port).request(http::verb::get, query).body();
      const json r = json::parse(last, nullptr, false);
      if (r.is_discarded() || r["status"] != "success") continue;
      for (const auto& s : r["data"]["result"])
        if (s["metric"].value("arm", "") == "stable") stable_rate = std::stod(s["value"][1].get<std::string>());
    } catch (const std::exception&) {
      // Prometheus is still starting.
    }
  }
  EXPECT_GT(stable_rate, 0) << last;
}

}  // namespace
}  // namespace pipelined::testing

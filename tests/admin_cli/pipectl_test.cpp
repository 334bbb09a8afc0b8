// pipectl end to end: every command against a running pipelined, and its exit codes.
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "admin-cli/format.h"
#include "admin-cli/html_report.h"
#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/daemon_process.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;

class PipectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "plugins");
    for (const char* p : {"test_echo", "test_echo_parallel", "test_fail_parallel"}) install_plugin(dir_ / "plugins", p);
    write_file(dir_ / "pipelined.yaml",
               "server: { listen: 127.0.0.1:0 }\nplugin_directory: " + dir_ / "plugins" + "\nstate_directory: " + dir_ / "state" +
                   "\nrollout: { sticky_key: 'header:X-User-Id', min_samples_per_arm: 5, guardrail_interval_ms: 3600000 }\n"
                   "pipelines:\n  p:\n    stages:\n"
                   "      echo: { variants: { serial: { plugin: test_echo }, parallel: { plugin: test_echo_parallel, config: { hold_mb: 16 } },"
                   " broken: { plugin: test_fail_parallel } }, stable: serial, candidate: parallel }\n"
                   "  w:\n    fallback: whole_request\n    stages:\n"
                   "      echo: { fallback: false, variants: { serial: { plugin: test_echo }, broken: { plugin: test_fail_parallel } }, stable: serial }\n"
                   "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n"
                   "  - { method: POST, path: /w, pipeline: w, request: { format: json }, response: { out: $stages.echo/plugin } }\n");
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml");
    socket_ = "--socket " + dir_ / "state/admin.sock";
  }

  // Sends n requests with distinct user keys; returns how many ran on the candidate arm.
  int traffic(int n, const std::string& path = "/run") {
    HttpClient client(daemon_->port());
    int candidate = 0;
    for (int i = 0; i < n; ++i) {
      auto r = client.request(http::verb::post, path, "{}", "application/json", {{"X-User-Id", "user-" + std::to_string(i)}});
      EXPECT_EQ(r.result_int(), 200) << r.body();
      candidate += r["X-Pipelined-Arm"] == "candidate";
    }
    return candidate;
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::string socket_;
};

TEST_F(PipectlTest, EveryCommandAgainstARunningDaemon) {
  auto r = pipectl(socket_ + " status");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("stable only"), std::string::npos) << r.out;

  r = pipectl(socket_ + " rollout --percent 50 --pipeline p --reason 'first half'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("live, candidate 50.00 % (echo=parallel)"), std::string::npos) << r.out;
  const int candidate = traffic(200);
  EXPECT_GT(candidate, 70);
  EXPECT_LT(candidate, 130);

  r = pipectl(socket_ + " --json status");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["rollout"]["pipelines"]["p"]["rollout"]["percent"], 50.0);

  r = pipectl(socket_ + " report --since 1h");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("candidate"), std::string::npos);
  EXPECT_NE(r.out.find("verdict:"), std::string::npos) << r.out;
  r = pipectl(socket_ + " report --format json --pipeline p");
  ASSERT_EQ(r.code, 0) << r.out;
  const json report = json::parse(r.out);
  EXPECT_EQ(report["pipelines"]["p"]["arms"]["candidate"]["requests"].get<int>() +
                report["pipelines"]["p"]["arms"]["stable"]["requests"].get<int>(),
            200);

  EXPECT_EQ(pipectl(socket_ + " pause").code, 0);
  r = pipectl(socket_ + " pause");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("already paused"), std::string::npos) << r.out;
  EXPECT_EQ(pipectl(socket_ + " resume").code, 0);

  // Rollback takes effect on the next request, with no restart or reload.
  r = pipectl(socket_ + " rollback --reason 'enough'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("rolled_back"), std::string::npos);
  EXPECT_EQ(traffic(50), 0);
  EXPECT_EQ(pipectl(socket_ + " rollback").code, 1);  // nothing live any more

  // A named stage and variant; then promote.
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline p --stage echo --variant parallel").code, 0);
  r = pipectl(socket_ + " promote");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(pipectl(socket_ + " status").out.find("echo=parallel"), std::string::npos);

  r = pipectl(socket_ + " plugins");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("test_echo_parallel"), std::string::npos);
  r = pipectl(socket_ + " plugins reload test_echo");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("plugin generation 2"), std::string::npos) << r.out;
}

// Global options (--socket, --url, --token, --json) before or after the command, alone or mixed.
// What create() keeps (the candidate holds 16 MiB: hold_mb) is the variant's instance memory, shown
// by `pipectl plugins` and beside the per-request peak in the report, not charged to a request.
TEST_F(PipectlTest, InstanceMemoryIsShownPerVariantBesideTheRequestPeak) {
  constexpr double MiB = 1 << 20;
  auto r = pipectl(socket_ + " --json plugins");
  ASSERT_EQ(r.code, 0) << r.out;
  std::map<std::string, double> instance;
  const json plugins = json::parse(r.out);
  for (const auto& p : plugins["plugins"])
    if (p["pipeline"] == "p") instance[p["variant"].get<std::string>()] = p["instance_bytes"].get<double>();
  EXPECT_GE(instance["parallel"], 16 * MiB) << r.out;
  EXPECT_LT(instance["serial"], 4 * MiB);

  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p").code, 0);
  traffic(40);
  r = pipectl(socket_ + " report --format json --pipeline p");
  ASSERT_EQ(r.code, 0) << r.out;
  const json report = json::parse(r.out)["pipelines"]["p"];
  EXPECT_LT(report["arms"]["candidate"]["peak_bytes"]["p50"].get<double>(), 4 * MiB) << report.dump();  // not the 16 MiB
  const json& now = report["memory_now"];
  EXPECT_GT(now["daemon_rss_bytes"].get<double>(), 16 * MiB);
  std::map<std::string, json> by_variant;
  for (const auto& v : now["variants"]) by_variant[v["variant"].get<std::string>()] = v;
  EXPECT_EQ(by_variant["parallel"]["role"], "candidate");
  EXPECT_EQ(by_variant["serial"]["role"], "stable");
  EXPECT_GE(by_variant["parallel"]["instance_bytes"].get<double>(), 16 * MiB);
  r = pipectl(socket_ + " report --pipeline p");
  EXPECT_NE(r.out.find("memory held now (daemon RSS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("candidate"), std::string::npos) << r.out;
}

TEST_F(PipectlTest, GlobalOptionsBeforeOrAfterTheCommand) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 50 --pipeline p").code, 0);
  traffic(10);
  const std::string sock = dir_ / "state/admin.sock";
  for (const std::string& args : {"--socket " + sock + " --json report", "--socket " + sock + " report --json",
                                  "report --socket " + sock + " --json", "report --json --socket " + sock,
                                  "--json report --since 1.5h --socket " + sock, "report --since 1.5h --pipeline p --json --socket " + sock}) {
    const Outcome r = pipectl(args);
    ASSERT_EQ(r.code, 0) << args << ": " << r.out;
    const json report = json::parse(r.out, nullptr, false);
    ASSERT_FALSE(report.is_discarded()) << args << ": " << r.out;
    EXPECT_EQ(report["pipelines"]["p"]["arms"]["candidate"]["requests"].get<int>() +
                  report["pipelines"]["p"]["arms"]["stable"]["requests"].get<int>(),
              10)
        << args;
  }
  for (const std::string& args : {"--json status --socket " + sock, "status --json --socket " + sock, "plugins --socket " + sock + " --json",
                                  "pause --pipeline p --json --socket " + sock, "resume --socket " + sock + " --json --pipeline p"}) {
    const Outcome r = pipectl(args);
    ASSERT_EQ(r.code, 0) << args << ": " << r.out;
    EXPECT_FALSE(json::parse(r.out, nullptr, false).is_discarded()) << args << ": " << r.out;
  }
  // Without --json, a table, wherever --socket is.
  EXPECT_NE(pipectl("status --socket " + sock).out.find("PIPELINE"), std::string::npos);

  // --url and --token after the command: the TCP listener is off in this config, so unreachable (3),
  // which shows --url was taken rather than refused as a usage error.
  Outcome r = pipectl("status --url http://127.0.0.1:1 --token t --json");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("http://127.0.0.1:1"), std::string::npos) << r.out;

  // The report window in the shared grammar: fractions and milliseconds.
  for (const char* since : {"1.5h", "90m", "0.5d", "7d"}) {
    r = pipectl(socket_ + " report --format json --since " + since);
    ASSERT_EQ(r.code, 0) << since << ": " << r.out;
    const json arms = json::parse(r.out)["pipelines"]["p"]["arms"];
    EXPECT_EQ(arms["stable"]["requests"].get<int>() + arms["candidate"]["requests"].get<int>(), 10) << since;
  }
  r = pipectl(socket_ + " report --since 250ms");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(PipectlTest, AFailingCandidateFallsBackAndIsRecorded) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline p --stage echo --variant broken").code, 0);
  EXPECT_EQ(traffic(20), 20);  // all on the candidate arm, all answered 200 through the fallback
  auto r = pipectl(socket_ + " report --format json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["pipelines"]["p"]["arms"]["candidate"]["fallbacks"], 20);
}

TEST_F(PipectlTest, WholeRequestFallbackAnswersFromStable) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 100 --pipeline w --stage echo --variant broken").code, 0);
  HttpClient client(daemon_->port());
  auto r = client.request(http::verb::post, "/w", "{}");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["out"], "test_echo");  // the stable plugin answered
  EXPECT_EQ(r["X-Pipelined-Arm"], "candidate");
  traffic(9, "/w");
  auto report = json::parse(pipectl(socket_ + " report --format json --pipeline w").out);
  EXPECT_EQ(report["pipelines"]["w"]["arms"]["candidate"]["fallbacks"], 10) << report.dump();
  EXPECT_EQ(report["pipelines"]["w"]["arms"]["candidate"]["success_rate"], 1.0);
}

TEST_F(PipectlTest, ShadowRunsAreComparedAndReported) {
  ASSERT_EQ(pipectl(socket_ + " rollout --percent 0 --shadow 100 --pipeline p").code, 0);
  EXPECT_EQ(traffic(20), 0);  // every answer came from stable
  // The shadow runs finish after the responses: poll the report until all 20 are compared.
  json shadow;
  for (int i = 0; i < 100; ++i) {
    shadow = json::parse(pipectl(socket_ + " report --format json --pipeline p").out)["pipelines"]["p"]["shadow"];
    if (shadow["compared"] == 20) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(shadow["compared"], 20) << shadow.dump();
  // test_echo_parallel names itself in its output: every comparison finds the difference.
  EXPECT_EQ(shadow["mismatched"], 20) << shadow.dump();
}

// Without --socket or $PIPELINED_ADMIN_SOCKET: a source tree's var/admin.sock under the current
// directory when it exists (scripts/run), else the package's socket (/etc/pipelined/pipelined.yaml).
TEST_F(PipectlTest, DefaultSocketIsTheSourceTreesThenThePackages) {
  const std::string tree = dir_ / "tree";
  std::filesystem::create_directories(tree + "/var");
  std::filesystem::create_symlink(dir_ / "state/admin.sock", tree + "/var/admin.sock");
  const std::string bare = std::string("env -u PIPELINED_ADMIN_SOCKET ") + PIPECTL_BINARY + " status";
  Outcome r = run("cd '" + tree + "' && " + bare);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("stable only"), std::string::npos) << r.out;

  const std::string elsewhere = dir_ / "elsewhere";
  std::filesystem::create_directories(elsewhere);
  r = run("cd '" + elsewhere + "' && " + bare);
  if (std::filesystem::exists(PIPELINED_PACKAGE_ADMIN_SOCKET)) GTEST_SKIP() << "a packaged pipelined runs on this machine";
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("cannot reach pipelined at " PIPELINED_PACKAGE_ADMIN_SOCKET), std::string::npos) << r.out;

  // The environment still wins over both.
  r = run("cd '" + tree + "' && PIPELINED_ADMIN_SOCKET='" + dir_ / "absent.sock" + "' " + PIPECTL_BINARY + " status");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find(dir_ / "absent.sock"), std::string::npos) << r.out;
}

TEST_F(PipectlTest, UsageAndUnreachableExitCodes) {
  Outcome r;
  EXPECT_EQ(pipectl(socket_ + " rollout").code, 2);               // --percent missing
  EXPECT_EQ(pipectl(socket_ + " rollout --percent 150").code, 2);  // out of range
  EXPECT_EQ(pipectl(socket_ + " report --since yesterday").code, 2);
  EXPECT_EQ(pipectl(socket_ + " report --since=''").code, 2);  // CLI11: "--since: 1 required TEXT:DURATION missing"
  for (const char* bad : {"-1h", "1y", "h", "1.5", "1e3s", "1h30m", "' 1h'"}) {
    r = pipectl(socket_ + " report --since=" + bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.out;
    EXPECT_NE(r.out.find("is not a duration"), std::string::npos) << bad << ": " << r.out;
  }
  r = pipectl(socket_ + " rollout --percent 5 --pipeline p --steps 5,50 --dwell 1hour");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("'1hour' is not a duration"), std::string::npos) << r.out;
  EXPECT_EQ(pipectl(socket_ + " status --pipeline p").code, 2);  // not an option of status, nor a global one
  EXPECT_EQ(pipectl(socket_ + " frobnicate").code, 2);
  EXPECT_EQ(pipectl(socket_ + " rollout --percent 5 --pipeline nope").code, 1);
  r = pipectl("--socket " + dir_ / "absent.sock" + " status");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.out.find("is the daemon running?"), std::string::npos) << r.out;
  r = pipectl("status --socket " + dir_ / "absent.sock");  // the global option after the command
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.out.find(dir_ / "absent.sock"), std::string::npos) << r.out;
  r = pipectl(socket_ + " report --html " + dir_ / "no-such-dir/report.html");
  EXPECT_EQ(r.code, 5) << r.out;
  EXPECT_NE(r.out.find("cannot write"), std::string::npos) << r.out;
  // A socket file nobody listens on.
  daemon_->stop(SIGKILL);
  r = pipectl(socket_ + " status");
  EXPECT_EQ(r.code, 3) << r.out;
}

TEST(PipectlFormat, TablesAlignAndNumbersRead) {
  EXPECT_EQ(pipectl::table({{"A", "BB"}, {"ccc", "d"}}), "A    BB\nccc  d\n");
  EXPECT_EQ(pipectl::table({{"名前", "x"}, {"ab", "y"}}), "名前  x\nab    y\n");  // display width, not bytes
  EXPECT_EQ(pipectl::bytes(1536), "1.5 KiB");  // durations and percents: tests/common
  const json answer = {{"persisted", false}, {"rollout", {{"id", 3}, {"pipeline", "menu"}, {"status", "live"}, {"percent", 12.5},
                                                          {"shadow_percent", 0}, {"variants", {{"ocr", "parallel"}}}, {"reason", ""}}}};
  const std::string text = pipectl::format_rollout(answer);
  EXPECT_NE(text.find("rollout 3 of menu: live, candidate 12.50 % (ocr=parallel)"), std::string::npos) << text;
  EXPECT_NE(text.find("it is written when the database is back"), std::string::npos) << text;
}

TEST(PipectlFormat, StatusListsReplicasWithTheirRoles) {
  json status = {{"version", "1"}, {"uptime_s", 5}, {"config", "c.yaml"}, {"ready", true}, {"requests_in_flight", 0},
                 {"plugins", {{"generation", 2}}}};
  status["rollout"] = {{"pipelines", json::object()},
                       {"metrics", {{"written", 10}, {"queued", 4}, {"lost", 0}, {"waiting_for_database", true}}},
                       {"database", {{"shared", true}}},
                       {"replica", {{"id", "r2"}, {"deciding", false}}},
                       {"replicas",
                        {{{"id", "r1"}, {"host", "h1"}, {"pid", 11}, {"plugin_generation", 2}, {"deciding", true}, {"live", true}, {"seen_ms_ago", 300}},
                         {{"id", "r2"}, {"host", "h2"}, {"pid", 12}, {"plugin_generation", 2}, {"deciding", false}, {"live", true}, {"this", true},
                          {"seen_ms_ago", 100}},
                         {{"id", "r3"}, {"host", "h3"}, {"pid", 13}, {"plugin_generation", 1}, {"deciding", false}, {"live", false},
                          {"seen_ms_ago", 9000}}}}};
  const std::string text = pipectl::format_status(status);
  EXPECT_NE(text.find("4 queued, 0 lost\nmetrics database unreachable: rows wait in the queue\n"), std::string::npos) << text;
  EXPECT_NE(text.find("replicas (this one: r2)"), std::string::npos) << text;
  EXPECT_NE(text.find("r1       h1    11   2           deciding  300 ms ago"), std::string::npos) << text;
  EXPECT_NE(text.find("r2 *     h2    12   2           serving   100 ms ago"), std::string::npos) << text;
  EXPECT_NE(text.find("r3       h3    13   1           lost      9000 ms ago"), std::string::npos) << text;
  // One daemon on SQLite: no replica section.
  status["rollout"]["database"]["shared"] = false;
  EXPECT_EQ(pipectl::format_status(status).find("replicas"), std::string::npos);
}

TEST(PipectlFormat, ReportShowsCrashCountsAsRequestsAndEventTimesAsUtc) {
  const json checks = json::array({{{"rule", "own_success"}, {"result", "holds"}, {"estimate", 0.99}, {"low", 0.97}, {"high", 1.0},
                                    {"threshold", 0.95}, {"alpha", 0.05}, {"unit", "fraction"}},
                                   {{"rule", "critical_crashes"}, {"result", "fails"}, {"estimate", 4}, {"low", 4}, {"high", 4},
                                    {"threshold", 3}, {"alpha", 0}, {"unit", "requests"}}});
  const json report = {{"pipelines",
                        {{"p",
                          {{"rollout", nullptr},
                           {"verdict", "roll back"},
                           {"decision", {{"checks", checks}}},
                           {"events", json::array({{{"time_ms", 1795805222830LL}, {"actor", "guardrails"}, {"action", "rollback"}, {"percent", 50},
                                                     {"details", {{"checks", checks}}}}})}}}}}};
  const std::string text = pipectl::format_report(report);
  EXPECT_NE(text.find("own_success       holds   99.0 % [97.0 %, 100.0 %]  95.0 %"), std::string::npos) << text;
  EXPECT_NE(text.find("critical_crashes  fails   4 [4, 4]"), std::string::npos) << text;
  EXPECT_EQ(text.find("300.0 %"), std::string::npos) << text;
  EXPECT_EQ(text.find("400.0 %"), std::string::npos) << text;
  EXPECT_NE(text.find("TIME (UTC)"), std::string::npos) << text;
  EXPECT_NE(text.find("2026-11-27 18:47:02  guardrails  rollback  50.00 %"), std::string::npos) << text;
  const std::string html = pipectl::html_report(report);
  EXPECT_NE(html.find("critical_crashes: <b>fails</b> 4 [4, 4] vs 3 ("), std::string::npos);
  EXPECT_NE(html.find("2026-11-27 18:47:02 UTC"), std::string::npos);
}

TEST(PipectlFormat, HtmlReportEscapesAndSurvivesMissingFields) {
  // A report from a daemon without the chart fields (latency_histogram, timeline): empty charts, no throw.
  const json old = {{"since_ms", 0},
                    {"pipelines",
                     {{"p",
                       {{"rollout", nullptr},
                        {"verdict", "<b>unsure</b>"},
                        {"shadow", {{"compared", 0}}},
                        {"arms", {{"stable", {{"requests", 3}, {"fallbacks", 0}, {"latency_ms", {{"p50", 1.0}}}, {"peak_bytes", {{"p50", 10.0}}}}}}},
                        {"events", json::array({{{"time_ms", 1000}, {"actor", "a&b"}, {"action", "start"}, {"reason", "x<y"}, {"percent", 5}}})}}}}}};
  const std::string html = pipectl::html_report(old);
  EXPECT_NE(html.find("&lt;b&gt;unsure&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(html.find("x&lt;y"), std::string::npos);
  EXPECT_NE(html.find("a&amp;b"), std::string::npos);
  EXPECT_EQ(html.find("<b>unsure"), std::string::npos);
  EXPECT_NE(html.find("data-chart=\"latency\""), std::string::npos);
  EXPECT_NE(html.find("no requests in the window"), std::string::npos);
  EXPECT_NE(pipectl::html_report(json::object()).find("No pipelines"), std::string::npos);
}

}  // namespace
}  // namespace pipelined::testing

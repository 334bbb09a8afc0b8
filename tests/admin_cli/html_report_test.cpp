// pipectl report --html as a person opens it: a daemon with a rollout that stepped, paused and
// resumed serves traffic, pipectl writes the page, and headless Chromium (driven by puppeteer-core,
// installed from npm under the build dir) loads it from file://. Every chart must have drawn data,
// the console no error, and the page must load nothing but itself.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/daemon_process.h"

namespace {

using namespace pipelined::testing;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kChromium = "/usr/bin/chromium";

// puppeteer-core under the build dir, installed once; the check script beside it so Node finds it.
fs::path browser_driver() {
  const fs::path dir = fs::path(PIPELINED_BINARY_DIR) / "tests/admin_cli/browser";
  fs::create_directories(dir);
  if (!fs::exists(dir / "node_modules/puppeteer-core/package.json")) {
    const Outcome npm = run("timeout 300 npm install --prefix " + dir.string() + " --no-audit --no-fund puppeteer-core@24");
    EXPECT_EQ(npm.code, 0) << "npm could not install puppeteer-core: " << npm.out;
  }
  fs::copy_file(PIPELINED_SOURCE_DIR "/tests/admin_cli/html_report_check.mjs", dir / "html_report_check.mjs",
                fs::copy_options::overwrite_existing);
  return dir;
}

TEST(HtmlReport, ChartsDrawInChromiumWithoutConsoleErrors) {
  if (!fs::exists(kChromium)) GTEST_SKIP() << kChromium << " is not installed (scripts/deps installs Debian's chromium)";
  TempDir dir;
  fs::create_directories(dir / "plugins");
  for (const char* p : {"test_echo", "test_echo_parallel"}) install_plugin(dir / "plugins", p);
  write_file(
      dir / "pipelined.yaml",
      "server: { listen: 127.0.0.1:0 }\nplugin_directory: " + dir / "plugins" + "\nstate_directory: " + dir / "state" +
          "\nrollout: { sticky_key: 'header:X-User-Id', guardrail_interval_ms: 100, min_samples_per_arm: 5 }\n"
          "pipelines:\n  p:\n    stages:\n"
          "      echo: { variants: { serial: { plugin: test_echo, config: { sleep_ms: 2 } }, parallel: { plugin: test_echo_parallel } },"
          " stable: serial, candidate: parallel }\n"
          "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n");
  DaemonProcess daemon(dir / "pipelined.yaml");
  const std::string socket = "--socket " + dir / "state/admin.sock";
  HttpClient client(daemon.port());
  auto traffic = [&](int first, int n) {
    for (int i = first; i < first + n; ++i)
      ASSERT_EQ(
          client.request(http::verb::post, "/run", "{}", "application/json", {{"X-User-Id", "user-" + std::to_string(i)}}).result_int(),
          200);
  };
  ASSERT_EQ(pipectl(socket + " rollout --percent 20 --pipeline p --reason 'first step'").code, 0);
  traffic(0, 40);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a guardrail pass or two: decision events
  ASSERT_EQ(pipectl(socket + " rollout --percent 50 --pipeline p").code, 0);
  traffic(100, 40);
  ASSERT_EQ(pipectl(socket + " pause --pipeline p --reason 'look at the charts'").code, 0);
  ASSERT_EQ(pipectl(socket + " resume --pipeline p").code, 0);
  traffic(200, 40);

  const std::string page = dir / "report.html";
  const Outcome written = pipectl(socket + " report --pipeline p --html " + page);
  ASSERT_EQ(written.code, 0) << written.out;
  std::stringstream html;
  html << std::ifstream(page).rdbuf();
  for (const char* external : {"<script", "<link", "<img", "src=", "@import"})
    EXPECT_EQ(html.str().find(external), std::string::npos) << external;

  const fs::path driver = browser_driver();
  const TempDir profile;
  const Outcome browser = run("cd " + driver.string() + " && timeout 60 node html_report_check.mjs " + kChromium + " file://" + page + " " +
                              profile.path().string());
  ASSERT_EQ(browser.code, 0) << browser.out;
  const json r = json::parse(browser.out.substr(std::min(browser.out.find('{'), browser.out.size())), nullptr, false);
  ASSERT_FALSE(r.is_discarded()) << browser.out;
  EXPECT_EQ(r["title"], "pipelined report");
  EXPECT_TRUE(r["errors"].empty()) << r["errors"].dump();
  EXPECT_EQ(r["requests"], json::array({"file://" + page})) << "the page loaded something else";
  std::map<std::string, json> charts;
  for (const auto& c : r["charts"]) charts[c.value("name", "")] = c;
  for (const char* name :
       {"latency", "latency_time", "share", "own_success", "user_success", "fallback", "stages", "memory", "memory_time"}) {
    ASSERT_TRUE(charts.count(name)) << name << " missing: " << r["charts"].dump();
    EXPECT_GT(charts[name]["drawn"].get<int>(), 0) << name << " drew nothing: " << charts[name].dump();
    EXPECT_GT(charts[name]["width"].get<double>(), 100) << name;
  }
  EXPECT_GT(charts["latency"]["rects"].get<int>(), 1);      // a bar per arm at least
  EXPECT_GT(charts["share"]["paths"].get<int>(), 0);        // the configured share through the events
  EXPECT_GT(charts["own_success"]["paths"].get<int>(), 0);  // a line per arm
  EXPECT_GE(charts["stages"]["rects"].get<int>(), 2);       // stage echo on both arms
  // The events table lists the operator's actions with their reasons.
  for (const char* text : {"first step", "look at the charts", "pause", "resume", "set_percent"})
    EXPECT_NE(html.str().find(text), std::string::npos) << text;
}

}  // namespace

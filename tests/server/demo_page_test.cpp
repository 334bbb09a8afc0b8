// The demo page (server.demo: true) in headless Chromium driven by puppeteer-core
// (demo_page_test.mjs): a menu photo uploaded, items filled in as the events arrive, every item with
// its image at the end, no console errors. Skipped only when /usr/bin/chromium is missing.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/server/menu_daemon.h"

namespace pipelined::testing {
namespace {

namespace fs = std::filesystem;

// Runs `command` through the shell; its output (stdout and stderr) goes to `log`.
int shell(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " >" + log.string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(DemoPage, FillsInTheMenuAsEventsArrive) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "/usr/bin/chromium is missing (scripts/deps installs Debian's chromium)";
  // puppeteer-core (no bundled browser) under the build directory, installed once.
  const fs::path npm_dir = fs::path(PIPELINED_BINARY_DIR) / "tests/server/puppeteer";
  fs::create_directories(npm_dir);
  TempDir scratch;
  if (!fs::exists(npm_dir / "node_modules/puppeteer-core")) {
    const int code =
        shell("cd " + npm_dir.string() + " && npm init -y >/dev/null && timeout 600 npm install --no-audit --no-fund puppeteer-core@23",
              scratch / "npm.log");
    ASSERT_EQ(code, 0) << "npm install puppeteer-core failed:\n" << harness::read_file(scratch / "npm.log");
  }
  // Node resolves the import next to the script: it runs from the npm directory.
  fs::copy_file(PIPELINED_SOURCE_DIR "/tests/server/demo_page_test.mjs", npm_dir / "demo_page_test.mjs",
                fs::copy_options::overwrite_existing);

  // Latencies at 0.1 of the real services': the menu takes a few seconds, events spread out.
  MenuDaemon daemon({"--time-scale", "0.1"}, {"demo: true"});
  fs::create_directories(scratch / "profile");
  const int code = shell("cd " + npm_dir.string() + " && timeout 300 node demo_page_test.mjs " + daemon.url() + " " +
                             MenuDaemon::menu("menu_ja_12") + " " + (scratch / "profile"),
                         scratch / "node.log");
  const std::string report = harness::read_file(scratch / "node.log");
  EXPECT_EQ(code, 0) << report;
  std::cout << report << "\n";
}

TEST(DemoPage, IsServedWithASlash) {
  MenuDaemon daemon({"--time-scale", "0"}, {"demo: true"});
  HttpClient client(daemon.port());
  auto page = client.request(http::verb::get, "/demo/");
  EXPECT_EQ(page.result_int(), 200);
  EXPECT_EQ(page[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_NE(page.body().find("text/event-stream"), std::string::npos);
  auto bare = client.request(http::verb::get, "/demo");
  EXPECT_EQ(bare.result_int(), 301);
  EXPECT_EQ(bare[http::field::location], "/demo/");
}

}  // namespace
}  // namespace pipelined::testing

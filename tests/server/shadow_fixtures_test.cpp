// Serial and parallel give the same answer on every menu fixture (issue 11), judged the way the
// daemon judges it: the pipelined binary on configs/default.yaml with provider-sim, the menu's
// rollout at 0 % with shadow at 100 %, so each request's stable answer (every stage serial) is
// compared with the all-parallel candidate's (rollout/compare.cpp, without $meta fields). Every
// fixture, the harder copies among them, must be compared and none may mismatch.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/menu_daemon.h"
#include "tests/server/sse_client.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<fs::path> menu_fixtures() {
  std::vector<fs::path> images;
  for (const auto& e : fs::recursive_directory_iterator(harness::source_dir() / "tests/fixtures/menus"))
    if (e.path().extension() == ".png" || e.path().extension() == ".jpg") images.push_back(e.path());
  std::sort(images.begin(), images.end());
  return images;
}

// Where the candidate's answer differed, per request id: the shadow_results rows (sqlite3 CLI).
std::string mismatches(const fs::path& database) {
  return run("sqlite3 '" + database.string() +
             "' \"SELECT request_id, candidate_ok, first_difference FROM shadow_results WHERE matched = 0\"")
      .out;
}

TEST(ShadowFixtures, SerialAndParallelAnswerEveryMenuFixtureAlike) {
  MenuDaemon daemon({"--time-scale", "0"}, {});
  const std::string socket = daemon.dir() / "admin.sock";
  const auto started =
      admin_request(socket, http::verb::post, "/admin/rollout", json{{"pipeline", "menu"}, {"percent", 0}, {"shadow_percent", 100}}.dump());
  ASSERT_EQ(started.result_int(), 200) << started.body();

  const auto images = menu_fixtures();
  ASSERT_GE(images.size(), 18u) << "fixtures missing";
  std::map<std::string, std::string> fixture_of;  // request id -> fixture, for the failure message
  HttpClient client(daemon.port());
  for (const auto& image : images) {
    const auto [body, type] = multipart_file("file", image.string());
    const auto r = client.request(http::verb::post, "/translate", body, type);
    ASSERT_EQ(r.result_int(), 200) << image << ": " << r.body();
    fixture_of[std::string(r["X-Request-Id"])] = image.filename().string();
  }

  // The shadow runs end after the answers, and their rows are written in batches: poll the report.
  json shadow;
  for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180); std::chrono::steady_clock::now() < deadline;) {
    const auto report = json::parse(admin_request(socket, http::verb::get, "/admin/report?pipeline=menu").body());
    shadow = report["pipelines"]["menu"]["shadow"];
    if (shadow.value("compared", 0.0) >= static_cast<double>(images.size())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  EXPECT_EQ(shadow.value("compared", 0.0), static_cast<double>(images.size())) << shadow.dump();
  EXPECT_EQ(shadow.value("mismatched", -1.0), 0.0) << shadow.dump() << "\nmismatches (request id|candidate ok|first difference):\n"
                                                   << mismatches(daemon.dir() / "pipelined.db") << "fixtures by request id: " << [&] {
                                                        std::string s;
                                                        for (const auto& [id, f] : fixture_of) s += id + "=" + f + " ";
                                                        return s;
                                                      }();
}

}  // namespace
}  // namespace pipelined::testing

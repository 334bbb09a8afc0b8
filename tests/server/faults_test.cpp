// Faults around the running daemon: the metrics database full, removed or locked by another writer,
// SIGKILL under load, a database the daemon may not write, a plugin directory others can write to,
// an admin socket refused to another user. User requests must not notice the database; what is lost is counted by cause.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/daemon_process.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

class FaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "plugins");
    std::filesystem::permissions(dir_ / "plugins", std::filesystem::perms(0755));
    install_plugin(dir_ / "plugins", "test_echo");
    write_file(
        dir_ / "pipelined.yaml",
        "server:\n  listen: 127.0.0.1:0\nworker_threads: 4\nplugin_directory: " + dir_ / "plugins" +
            "\nstate_directory: " + dir_ / "state" +
            "\nmetrics:\n  flush_interval_ms: 50\n"
            "pipelines:\n  p: { stages: { echo: { variants: { serial: { plugin: test_echo } }, stable: serial } } }\n"
            "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n");
  }

  DaemonProcess& start() {
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml");
    return *daemon_;
  }

  std::string socket() const { return dir_ / "state/admin.sock"; }
  std::string database() const { return dir_ / "state/pipelined.db"; }

  // n requests, each answered 200 well within a second: none waits on the database.
  void serve(int n) {
    HttpClient client(daemon_->port());
    for (int i = 0; i < n; ++i) {
      const auto began = std::chrono::steady_clock::now();
      auto r = client.request(http::verb::post, "/run", json{{"i", i}}.dump());
      ASSERT_EQ(r.result_int(), 200) << r.body();
      EXPECT_LT(std::chrono::steady_clock::now() - began, milliseconds(500));
    }
  }

  // The metrics writer's counters from the rollout status: written, queued, lost, lost_by_cause.
  json rows() const { return json::parse(admin_request(socket(), http::verb::get, "/admin/rollout").body())["metrics"]; }

  // Waits up to 10 s for `pred(rows())`; returns the last rows seen.
  template <typename Pred>
  json rows_when(Pred pred) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    json r = rows();
    while (!pred(r) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(25));
      r = rows();
    }
    return r;
  }

  std::string metric(const std::string& series) const { return admin_metric(socket(), series); }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
};

// No filesystem small enough to fill is at hand, and PRAGMA max_page_count binds only the connection
// that sets it; a file size limit on the daemon makes its writes fail the same way (EFBIG).
TEST_F(FaultsTest, DatabaseFullLosesRowsCountedAsDiskFullNotRequests) {
  auto& d = start();
  serve(3);
  ASSERT_EQ(rows_when([](const json& r) { return r["written"] == 3; })["written"], 3);
  const rlimit tiny{1, RLIM_INFINITY};
  ASSERT_EQ(::prlimit(d.pid(), RLIMIT_FSIZE, &tiny, nullptr), 0);
  serve(10);
  auto r = rows_when([](const json& r) { return r["lost"] == 10; });
  EXPECT_EQ(r["lost_by_cause"]["disk_full"], 10) << r.dump();
  EXPECT_EQ(metric(R"(pipelined_metric_rows_total{state="lost",cause="disk_full"})"),
            R"(pipelined_metric_rows_total{state="lost",cause="disk_full"} 10)");

  const rlimit none{RLIM_INFINITY, RLIM_INFINITY};
  ASSERT_EQ(::prlimit(d.pid(), RLIMIT_FSIZE, &none, nullptr), 0);
  serve(4);
  r = rows_when([](const json& r) { return r["written"] == 7; });
  EXPECT_EQ(r["written"], 7) << "the writer did not recover once there was room: " << r.dump();
}

TEST_F(FaultsTest, DatabaseRemovedWhileRunningLosesRowsCountedAsUnavailable) {
  start();
  serve(3);
  ASSERT_EQ(rows_when([](const json& r) { return r["written"] == 3; })["written"], 3);
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(database() + suffix);
  serve(5);
  auto r = rows_when([](const json& r) { return r["lost"] == 5; });
  EXPECT_EQ(r["lost_by_cause"]["unavailable"], 5) << r.dump();
  EXPECT_EQ(r["written"], 3) << "rows counted as written into a removed file: " << r.dump();
  EXPECT_EQ(HttpClient(daemon_->port()).request(http::verb::get, "/readyz").result_int(), 200);
}

TEST_F(FaultsTest, DatabaseLockedByAnotherWriterLosesRowsCountedAsLocked) {
  start();
  serve(2);
  ASSERT_EQ(rows_when([](const json& r) { return r["written"] == 2; })["written"], 2);
  {
    SQLite::Database other(database(), SQLite::OPEN_READWRITE);
    other.exec("BEGIN EXCLUSIVE");
    serve(5);
    auto r = rows_when([](const json& r) { return r["lost"] == 5; });
    EXPECT_EQ(r["lost_by_cause"]["locked"], 5) << r.dump();
    other.exec("ROLLBACK");
  }
  serve(3);
  EXPECT_EQ(rows_when([](const json& r) { return r["written"] == 5; })["written"], 5);
}

// A database the daemon may read but not write (root ignores file modes, so the daemon runs as uid
// 65534 here, the file root's and 0444): the daemon starts, is ready and answers every request; the
// rows are lost and counted as unavailable (read-only is one of its causes).
TEST_F(FaultsTest, ReadOnlyDatabaseLosesRowsCountedAsUnavailableNotRequests) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to start the daemon as another user";
  start();
  serve(2);
  ASSERT_EQ(rows_when([](const json& r) { return r["written"] == 2; })["written"], 2);
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  namespace fs = std::filesystem;
  for (const auto& entry : fs::recursive_directory_iterator(dir_ / "state"))
    ASSERT_EQ(::chown(entry.path().c_str(), 65534, 65534), 0) << entry.path();
  ASSERT_EQ(::chown((dir_ / "state").c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chown(database().c_str(), 0, 0), 0);
  fs::permissions(database(), fs::perms(0444));
  const std::string as_nobody = dir_ / "pipelined-as-nobody";
  write_file(as_nobody, "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups " + std::string(PIPELINED_BINARY) + " \"$@\"\n");
  fs::permissions(as_nobody, fs::perms(0755));
  daemon_ = std::make_unique<DaemonProcess>(dir_ / "pipelined.yaml", as_nobody);

  EXPECT_EQ(HttpClient(daemon_->port()).request(http::verb::get, "/readyz").result_int(), 200);
  serve(5);
  const auto r = rows_when([](const json& r) { return r["lost"] == 5; });
  EXPECT_EQ(r["lost_by_cause"]["unavailable"], 5) << r.dump();
  EXPECT_EQ(r["written"], 0) << r.dump();
}

// The writer commits a batch (at most 4096 rows) every flush interval (50 ms here) or at 512 rows
// queued. A SIGKILL loses what was not committed yet: the batch being written and what was queued
// since; every row counted written survives, and the database stays sound.
TEST_F(FaultsTest, SigkillUnderLoadKeepsEveryCommittedRowAndTheDaemonComesBack) {
  auto& d = start();
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 2; ++t) {
    clients.emplace_back([&] {
      try {
        HttpClient c(d.port());
        while (!stop) {
          if (c.request(http::verb::post, "/run", "{}").result_int() == 200) ++answered;
        }
      } catch (const std::exception&) {  // the daemon died under us
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(1000));
  const json before = rows();
  EXPECT_EQ(d.stop(SIGKILL), 128 + SIGKILL);
  stop = true;
  for (auto& c : clients) c.join();
  ASSERT_GT(answered.load(), 0);

  start();  // the same state directory: a stale admin socket, a WAL to recover
  serve(1);
  long rows = 0;
  {
    SQLite::Database db(database(), SQLite::OPEN_READONLY);
    EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
    rows = db.execAndGet("SELECT COUNT(*) FROM requests").getInt64();
  }
  EXPECT_GT(rows, 0);
  EXPECT_GE(rows, before["written"].get<long>()) << "committed rows were lost";
  EXPECT_LE(answered.load() - rows, 4096) << answered.load() << " answered, " << rows << " rows; before the kill: " << before.dump();
}

TEST_F(FaultsTest, PluginDirectoryWritableByOthersRefusesTheReloadAndTheOldPluginsServe) {
  start();
  std::filesystem::permissions(dir_ / "plugins", std::filesystem::perms::others_write, std::filesystem::perm_options::add);
  const auto out = pipectl("--socket " + socket() + " plugins reload");
  EXPECT_EQ(out.code, 1) << out.out;
  EXPECT_NE(out.out.find("writable by others"), std::string::npos) << out.out;
  serve(3);
  std::filesystem::permissions(dir_ / "plugins", std::filesystem::perms::others_write, std::filesystem::perm_options::remove);
  const auto again = pipectl("--socket " + socket() + " plugins reload");
  EXPECT_EQ(again.code, 0) << again.out;
}

TEST_F(FaultsTest, AdminSocketIsRefusedToAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run pipectl as another user";
  start();
  const auto out =
      run("setpriv --reuid=65534 --regid=65534 --clear-groups " + std::string(PIPECTL_BINARY) + " --socket " + socket() + " status");
  EXPECT_EQ(out.code, 3) << out.out;
  EXPECT_NE(out.out.find("permission denied"), std::string::npos) << out.out;
  EXPECT_EQ(out.out.find('\n'), out.out.size() - 1) << "one line: " << out.out;
  EXPECT_EQ(pipectl("--socket " + socket() + " status").code, 0);
}

}  // namespace
}  // namespace pipelined::testing

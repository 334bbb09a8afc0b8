// The pipelined binary end to end over HTTP: statuses for bad input, keep-alive, slow clients,
// admin isolation, reloads, graceful drain and hot swap under load.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/server/daemon_process.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;

// A config with test plugins from `plugin_dir`: /run (echo -> echo2), /sleep (sleep_ms from the
// body via "sleep_sleep_ms"), /swap (the versioned plugin), /fail.
std::string test_config(const TempDir& dir, const std::string& extra = "", const std::string& admin = "") {
  return "server:\n  listen: 127.0.0.1:0\n  io_threads: 2\n  body_limit_bytes: 4096\n  header_limit_bytes: 2048\n"
         "  read_timeout_ms: 600\n  idle_timeout_ms: 1500\n  drain_timeout_ms: 5000\n"
         "worker_threads: 8\nplugin_directory: " + dir / "plugins" + "\nstate_directory: " + dir / "state" + "\n" +
         (admin.empty() ? "" : admin) +
         "pipelines:\n"
         "  p:\n    stages:\n"
         "      echo: { variants: { serial: { plugin: test_echo } }, stable: serial }\n"
         "      echo2: { needs: [echo], variants: { serial: { plugin: test_echo2 } }, stable: serial }\n"
         "  slow:\n    stages:\n"
         "      sleep: { variants: { serial: { plugin: test_sleep } }, stable: serial }\n"
         "  swap:\n    stages:\n"
         "      swap: { variants: { serial: { plugin: swap, config: { sleep_ms: 2 } } }, stable: serial }\n"
         "  broken:\n    stages:\n"
         "      fail: { variants: { serial: { plugin: test_fail, config: { error_class: timeout } } }, stable: serial }\n"
         "endpoints:\n"
         "  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo2, ms: $meta.elapsed_ms } }\n"
         "  - { method: POST, path: /upload, pipeline: p, request: { format: multipart, files_field: file }, response: { out: $stages.echo2 } }\n"
         "  - { method: POST, path: /sleep, pipeline: slow, request: { format: json }, response: { out: $stages.sleep } }\n"
         "  - { method: POST, path: /swap, pipeline: swap, request: { format: json }, response: { version: $stages.swap/version } }\n"
         "  - { method: POST, path: /fail, pipeline: broken, request: { format: json }, response: { out: $stages.fail } }\n" +
         extra;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "plugins");
    std::filesystem::permissions(dir_ / "plugins", std::filesystem::perms(0755));
    for (const char* p : {"test_echo", "test_echo2", "test_sleep", "test_fail"}) install_plugin(dir_ / "plugins", p);
    install_plugin(dir_ / "plugins", "test_versioned_v1", "swap");
    config_ = dir_ / "pipelined.yaml";
  }

  DaemonProcess& start(const std::string& extra = "", const std::string& admin = "") {
    write_file(config_, test_config(dir_, extra, admin));
    daemon_ = std::make_unique<DaemonProcess>(config_);
    return *daemon_;
  }

  std::string socket() const { return dir_ / "state/admin.sock"; }

  TempDir dir_;
  std::string config_;
  std::unique_ptr<DaemonProcess> daemon_;
};

int error_status(const HttpResponse& r) { return json::parse(r.body())["error"]["status"]; }

TEST_F(DaemonTest, ServesAPipelineAndReportsHealth) {
  HttpClient client(start().port());
  auto r = client.request(http::verb::post, "/run", R"({"hello": "world"})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto body = json::parse(r.body());
  EXPECT_EQ(body["out"]["hello"], "world");
  EXPECT_EQ(body["out"]["plugin"], "test_echo2");
  EXPECT_TRUE(body["ms"].is_number());
  EXPECT_EQ(r["X-Pipelined-Arm"], "stable");
  EXPECT_FALSE(r["X-Request-Id"].empty());
  EXPECT_EQ(client.request(http::verb::get, "/healthz").result_int(), 200);
  EXPECT_EQ(client.request(http::verb::get, "/readyz").result_int(), 200);
}

TEST_F(DaemonTest, MultipartUploadReachesThePipeline) {
  HttpClient client(start().port());
  const std::string body = "--xyz\r\nContent-Disposition: form-data; name=\"lang\"\r\n\r\nja\r\n"
                           "--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.png\"\r\nContent-Type: image/png\r\n\r\n"
                           "PNGDATA\r\n--xyz--\r\n";
  auto r = client.request(http::verb::post, "/upload", body, "multipart/form-data; boundary=xyz");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["out"]["lang"], "ja");
}

TEST_F(DaemonTest, BadInputGetsAJsonErrorWithTheRightStatus) {
  HttpClient client(start().port());
  auto r = client.request(http::verb::post, "/nope", "{}");
  EXPECT_EQ(r.result_int(), 404);
  EXPECT_EQ(error_status(r), 404);
  r = client.request(http::verb::get, "/run");
  EXPECT_EQ(r.result_int(), 405);
  EXPECT_EQ(r[http::field::allow], "POST");
  r = client.request(http::verb::post, "/run", "{\"truncated\": ");
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_NE(json::parse(r.body())["error"]["message"].get<std::string>().find("malformed JSON"), std::string::npos);
  r = client.request(http::verb::post, "/run", "a=1", "application/x-www-form-urlencoded");
  EXPECT_EQ(r.result_int(), 415);
  r = client.request(http::verb::post, "/upload", "--b\r\nbroken", "multipart/form-data; boundary=b");
  EXPECT_EQ(r.result_int(), 400);
  r = client.request(http::verb::post, "/fail", "{}");  // the stage fails with class "timeout"
  EXPECT_EQ(r.result_int(), 504);
  EXPECT_EQ(json::parse(r.body())["error"]["class"], "timeout");
  // The connection survived every error above.
  EXPECT_EQ(client.request(http::verb::post, "/run", "{}").result_int(), 200);

  HttpClient big(daemon_->port());
  r = big.request(http::verb::post, "/run", "{\"pad\": \"" + std::string(5000, 'x') + "\"}");
  EXPECT_EQ(r.result_int(), 413);
  HttpClient headers(daemon_->port());
  r = headers.request(http::verb::post, "/run", "{}", "application/json", {{"X-Big", std::string(3000, 'h')}});
  EXPECT_EQ(r.result_int(), 431);

  // Not HTTP at all.
  HttpClient garbage(daemon_->port());
  net::write(garbage.socket(), net::buffer(std::string("HELLO THERE\r\n\r\n")));
  boost::beast::flat_buffer buffer;
  HttpResponse res;
  http::read(garbage.socket(), buffer, res);
  EXPECT_EQ(res.result_int(), 400);
  // Still serving.
  EXPECT_EQ(HttpClient(daemon_->port()).request(http::verb::post, "/run", "{}").result_int(), 200);
}

TEST_F(DaemonTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  HttpClient client(start().port());
  const auto local = client.socket().local_endpoint();
  for (int i = 0; i < 5; ++i) {
    auto r = client.request(http::verb::post, "/run", json{{"i", i}}.dump());
    ASSERT_EQ(r.result_int(), 200);
    EXPECT_EQ(json::parse(r.body())["out"]["i"], i);
    EXPECT_TRUE(r.keep_alive());
  }
  EXPECT_EQ(client.socket().local_endpoint(), local);
}

// A client that sends its header a byte at a time is cut off at the read timeout (600 ms) while
// others are served.
TEST_F(DaemonTest, SlowClientIsCutOffWhileOthersAreServed) {
  auto& d = start();
  net::io_context io;
  net::ip::tcp::socket slow(io);
  slow.connect({net::ip::make_address("127.0.0.1"), d.port()});
  const std::string header = "POST /run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n";
  const auto started = std::chrono::steady_clock::now();
  bool closed = false;
  for (std::size_t i = 0; i < header.size() && !closed; ++i) {
    boost::system::error_code ec;
    net::write(slow, net::buffer(&header[i], 1), ec);
    if (ec) closed = true;
    if (i == 3) {
      EXPECT_EQ(HttpClient(d.port()).request(http::verb::post, "/run", "{}").result_int(), 200);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (slow.available(ec) > 0 || ec) break;
  }
  char byte;
  boost::system::error_code ec;
  slow.read_some(net::buffer(&byte, 1), ec);  // EOF (or reset) once the server gave up
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  // An idle keep-alive connection is closed after the idle timeout.
  HttpClient idle(d.port());
  ASSERT_EQ(idle.request(http::verb::post, "/run", "{}").result_int(), 200);
  idle.socket().read_some(net::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, net::error::eof);
}

TEST_F(DaemonTest, AdminIsOnlyOnTheAdminSocket) {
  auto& d = start();
  HttpClient client(d.port());
  for (const char* path : {"/admin/status", "/admin/plugins", "/admin/rollout", "/admin/report"})
    EXPECT_EQ(client.request(http::verb::get, path).result_int(), 404) << path;
  EXPECT_EQ(client.request(http::verb::post, "/admin/plugins/reload").result_int(), 404);
  EXPECT_EQ(client.request(http::verb::post, "/admin/rollout/rollback", "{}").result_int(), 404);

  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto status = admin_request(socket(), http::verb::get, "/admin/status");
  ASSERT_EQ(status.result_int(), 200);
  auto body = json::parse(status.body());
  EXPECT_EQ(body["ready"], true);
  EXPECT_EQ(body["plugins"]["generation"], 1);
  EXPECT_EQ(admin_request(socket(), http::verb::get, "/admin/nope").result_int(), 404);
}

TEST_F(DaemonTest, TcpAdminNeedsTheToken) {
  auto& d = start("", "admin:\n  socket: " + dir_ / "state/admin.sock" + "\n  tcp: 127.0.0.1:0\n  token: s3cret\n");
  ASSERT_NE(d.admin_port(), 0);
  HttpClient admin(d.admin_port());
  EXPECT_EQ(admin.request(http::verb::get, "/admin/status").result_int(), 401);
  EXPECT_EQ(admin.request(http::verb::get, "/admin/status", "", "", {{"Authorization", "Bearer wrong"}}).result_int(), 401);
  EXPECT_EQ(admin.request(http::verb::get, "/admin/status", "", "", {{"Authorization", "Bearer s3cret"}}).result_int(), 200);
}

TEST_F(DaemonTest, BrokenConfigReloadIsRefusedAndTheOldConfigServes) {
  auto& d = start();
  write_file(config_, test_config(dir_) + "typo_key: 1\n");
  auto r = admin_request(socket(), http::verb::post, "/admin/config/reload");
  ASSERT_EQ(r.result_int(), 422);
  auto errors = json::parse(r.body())["errors"];
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["key"], "typo_key");
  EXPECT_GT(errors[0]["line"].get<int>(), 1);
  EXPECT_EQ(HttpClient(d.port()).request(http::verb::post, "/run", "{}").result_int(), 200);

  // A good config with a new endpoint takes effect on reload.
  write_file(config_, test_config(dir_, "  - { method: POST, path: /run2, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n"));
  EXPECT_EQ(HttpClient(d.port()).request(http::verb::post, "/run2", "{}").result_int(), 404);
  ASSERT_EQ(admin_request(socket(), http::verb::post, "/admin/config/reload").result_int(), 200);
  EXPECT_EQ(HttpClient(d.port()).request(http::verb::post, "/run2", "{}").result_int(), 200);

  // SIGHUP with a broken config changes nothing either.
  write_file(config_, "server: [\n");
  d.signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(HttpClient(d.port()).request(http::verb::post, "/run2", "{}").result_int(), 200);
}

TEST_F(DaemonTest, BadPluginReloadIsRefusedAndTheOldPluginServes) {
  auto& d = start();
  install_plugin(dir_ / "plugins", "test_bad_abi", "swap");
  auto r = admin_request(socket(), http::verb::post, "/admin/plugins/reload");
  ASSERT_EQ(r.result_int(), 422);
  EXPECT_NE(r.body().find("ABI version 999"), std::string::npos) << r.body();
  auto ok = HttpClient(d.port()).request(http::verb::post, "/swap", "{}");
  ASSERT_EQ(ok.result_int(), 200);
  EXPECT_EQ(json::parse(ok.body())["version"], "1");
}

TEST_F(DaemonTest, SigtermDrainsRequestsInFlight) {
  auto& d = start();
  std::atomic<int> finished{0};
  std::vector<std::thread> clients;
  std::vector<int> statuses(3, 0);
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back([&, i] {
      HttpClient c(d.port());
      statuses[i] = c.request(http::verb::post, "/sleep", R"({"sleep_sleep_ms": 700})").result_int();
      ++finished;
    });
  }
  HttpClient open_connection(d.port());  // a keep-alive connection that is idle when SIGTERM comes
  ASSERT_EQ(open_connection.request(http::verb::post, "/run", "{}").result_int(), 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // the three are in flight
  d.signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // A new request on an open connection is answered 503 and the connection closed.
  auto refused = open_connection.request(http::verb::post, "/run", "{}");
  EXPECT_EQ(refused.result_int(), 503);
  EXPECT_FALSE(refused.keep_alive());
  // New connections are refused once the listener closed.
  boost::system::error_code ec;
  net::io_context io;
  net::ip::tcp::socket late(io);
  late.connect({net::ip::make_address("127.0.0.1"), d.port()}, ec);
  EXPECT_TRUE(ec) << "a new connection was accepted while draining";
  for (auto& c : clients) c.join();
  for (int s : statuses) EXPECT_EQ(s, 200);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

// Clients loop on /swap while the test alternately installs the v1 and v2 builds of the plugin
// and reloads, 12 times: no request may fail and both versions must answer.
TEST_F(DaemonTest, HotSwapUnderLoadFailsNoRequest) {
  auto& d = start();
  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, failures{0};
  std::mutex mu;
  std::set<std::string> versions;
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      HttpClient c(d.port());
      while (!stop) {
        auto r = c.request(http::verb::post, "/swap", "{}");
        ++requests;
        if (r.result_int() != 200) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mu);
        versions.insert(json::parse(r.body())["version"].get<std::string>());
      }
    });
  }
  for (int i = 0; i < 12; ++i) {
    install_plugin(dir_ / "plugins", i % 2 == 0 ? "test_versioned_v2" : "test_versioned_v1", "swap");
    auto r = admin_request(socket(), http::verb::post, "/admin/plugins/reload");
    ASSERT_EQ(r.result_int(), 200) << r.body();
    const int seen = requests;
    while (requests < seen + 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(versions, (std::set<std::string>{"1", "2"}));
  auto plugins = json::parse(admin_request(socket(), http::verb::get, "/admin/plugins").body());
  EXPECT_EQ(plugins["generation"], 13);
  EXPECT_EQ(plugins["retired_libraries"], 0);  // every replaced build was unloaded
}

TEST_F(DaemonTest, InvalidConfigExitsWithCode2) {
  write_file(config_, "server:\n  listen: nowhere\n");
  const std::string cmd = std::string(PIPELINED_BINARY) + " --check-config --config " + config_ + " 2>/dev/null";
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
  write_file(config_, test_config(dir_));
  EXPECT_EQ(WEXITSTATUS(std::system((std::string(PIPELINED_BINARY) + " --check-config --config " + config_ + " >/dev/null").c_str())), 0);
}

}  // namespace
}  // namespace pipelined::testing

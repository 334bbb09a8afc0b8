// Memory under concurrent bursts: the pipelined binary on configs/default.yaml, the menu's
// all-parallel candidate at 100 %, bursts of N concurrent POST /translate (menu_ja_12), and after
// each burst the resident memory of the daemon and of its runner processes (/proc/PID/status
// VmRSS). Issue 13 measured the daemon alone growing from 1.89 GB to 2.69 GB over ten bursts of 16.
//   build/bench/burst_rss [--bursts 10] [--concurrent 16] [--time-scale 0.1] [--menu menu_ja_12]
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "bench/proc_status.h"
#include "tests/server/menu_daemon.h"
#include "tests/server/sse_client.h"

namespace {

using nlohmann::json;
using pipelined::testing::HttpClient;
using pipelined::testing::MenuDaemon;
namespace http = boost::beast::http;

// VmRSS of a process in MiB, 0 when it is gone.
double rss_mib(pid_t pid) { return pipelined::bench::read_proc(pid).rss_kb / 1024.0; }

// The runner processes' pids, from the admin API.
std::vector<pid_t> runner_pids(const std::string& socket) {
  std::vector<pid_t> pids;
  const json plugins = json::parse(pipelined::testing::admin_request(socket, http::verb::get, "/admin/plugins").body());
  for (const auto& p : plugins["plugins"])
    if (p.contains("runner") && p["runner"].value("pid", 0L) > 0) pids.push_back(p["runner"]["pid"].get<pid_t>());
  return pids;
}

}  // namespace

int main(int argc, char** argv) {
  std::string time_scale = "0.1", menu = "menu_ja_12";
  int bursts = 10, concurrent = 16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--bursts")
      bursts = std::stoi(argv[++i]);
    else if (i + 1 < argc && a == "--concurrent")
      concurrent = std::stoi(argv[++i]);
    else if (i + 1 < argc && a == "--time-scale")
      time_scale = argv[++i];
    else if (i + 1 < argc && a == "--menu")
      menu = argv[++i];
    else {
      std::cerr << "usage: " << argv[0] << " [--bursts N] [--concurrent N] [--time-scale S] [--menu FIXTURE]\n";
      return 2;
    }
  }
  MenuDaemon daemon({"--time-scale", time_scale, "--seed", "1"}, {});
  const std::string socket = daemon.dir() / "admin.sock";
  const auto r = pipelined::testing::admin_request(socket, http::verb::post, "/admin/rollout", R"({"pipeline": "menu", "percent": 100})");
  if (r.result_int() != 200) {
    std::cerr << "rollout refused: " << r.body() << "\n";
    return 1;
  }
  const auto [body, type] = pipelined::testing::multipart_file("file", MenuDaemon::menu(menu));
  std::printf("%-6s %10s %12s %12s %10s\n", "burst", "failed", "daemon MiB", "runners MiB", "total MiB");
  auto sample = [&](const std::string& label, int failed) {
    double runners = 0;
    for (pid_t pid : runner_pids(socket)) runners += rss_mib(pid);
    const double own = rss_mib(daemon.pid());
    std::printf("%-6s %10d %12.0f %12.0f %10.0f\n", label.c_str(), failed, own, runners, own + runners);
    std::fflush(stdout);
    return own + runners;
  };
  sample("start", 0);
  double first = 0, last = 0;
  int failed_total = 0;
  for (int b = 1; b <= bursts; ++b) {
    std::atomic<int> failed{0};
    std::vector<std::thread> users;
    for (int u = 0; u < concurrent; ++u)
      users.emplace_back([&, u] {
        HttpClient client(daemon.port());
        auto res = client.request(http::verb::post, "/translate", body, type, {{"X-User-Id", "burst-user-" + std::to_string(u)}});
        if (res.result_int() != 200) ++failed;
      });
    for (auto& t : users) t.join();
    failed_total += failed;
    last = sample(std::to_string(b), failed);
    if (b == 1) first = last;
  }
  std::printf("menus: %d; failed: %d; total RSS after burst 1: %.0f MiB, after burst %d: %.0f MiB (%+.1f %%)\n", bursts * concurrent,
              failed_total, first, bursts, last, 100 * (last / first - 1));
  std::printf("command: build/bench/burst_rss --bursts %d --concurrent %d --time-scale %s --menu %s\n", bursts, concurrent,
              time_scale.c_str(), menu.c_str());
  return failed_total == 0 ? 0 : 1;
}

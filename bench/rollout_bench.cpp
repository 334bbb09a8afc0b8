// Rollout costs: what record() adds to a request, how many rows per second the writer stores, and
// how long from `pipectl rollback` starting to the first request served on stable.
// Run: build/bench/rollout_bench [rows]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "bench/sample_request.h"
#include "daemon/memory/memory_account.h"
#include "rollout/rollout.h"
#include "rollout/store.h"
#include "tests/server/daemon_process.h"
#include "bench/stats.h"

using namespace pipelined;
using Clock = std::chrono::steady_clock;

namespace {

using pipelined::bench::percentile;

}  // namespace

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 200000;
  testing::TempDir dir;
  rollout::RolloutSettings config;
  config.pipelines = {{"p", {{"a", "serial", "parallel", {"serial", "parallel"}}, {"b", "serial", "", {"serial"}}}, false}};
  config.database = dir / "state/pipelined.db";
  config.queue_capacity = static_cast<std::size_t>(rows) * 2;
  std::printf("command: %s %d\n", argv[0], rows);

  // 1. record() on the request path, writer running.
  {
    rollout::RolloutController c(config);
    c.start();
    std::vector<double> us;
    us.reserve(20000);
    for (int i = 0; i < 20000; ++i) {
      auto row = bench::sample_request(i);
      const auto t0 = Clock::now();
      c.record(std::move(row));
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));  // request-like pacing
    }
    std::printf("record(): p50 %.2f us, p99 %.2f us over 20000 calls (goal: p50 <= 5 us)\n", percentile(us, 0.5), percentile(us, 0.99));
    c.stop();
  }

  // 2. Writer throughput: rows queued as fast as possible, then written.
  {
    rollout::RolloutController c(config);
    c.start();
    const auto t0 = Clock::now();
    for (int i = 0; i < rows; ++i) c.record(bench::sample_request(i));
    c.flush();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("writer: %d request rows (+%d stage rows) in %.2f s = %.0f request rows/s (goal: >= 100000)\n", rows, rows * 2, s, rows / s);
    c.stop();
  }

  // 4 (printed first, measured here). Memory accounting: the cost the replaced operator new adds
  // to an allocation when a request's account is installed, against the same call with none.
  {
    constexpr int kAllocs = 2'000'000;
    auto churn = [] {
      const auto t0 = Clock::now();
      for (int i = 0; i < kAllocs; ++i) {
        auto* p = new char[64];
        p[0] = static_cast<char>(i);
        asm volatile("" : : "r"(p) : "memory");  // keep the allocation
        delete[] p;
      }
      return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kAllocs;
    };
    const double without = churn();
    memory::MemoryAccount request, stage;
    stage.parent = &request;
    double with = 0;
    {
      memory::ScopedAccount scope(&stage);
      with = churn();
    }
    std::printf("memory accounting (%s): new+delete of 64 B: %.1f ns without an account, %.1f ns charged to a stage and its request\n",
                memory::accounting_enabled() ? "on" : "off", without, with);
  }

  // 3. pipectl rollback -> first request served on stable, against the real daemon.
  std::filesystem::create_directories(dir / "plugins");
  testing::install_plugin(dir / "plugins", "test_echo");
  testing::install_plugin(dir / "plugins", "test_echo_parallel");
  testing::write_file(dir / "d.yaml", "server: { listen: 127.0.0.1:0 }\nplugin_directory: " + dir / "plugins" + "\nstate_directory: " +
                                          dir / "dstate" + "\nrollout: { sticky_key: 'header:X-User-Id' }\npipelines:\n  p:\n    stages:\n"
                                          "      echo: { variants: { serial: { plugin: test_echo }, parallel: { plugin: test_echo_parallel } }, stable: serial }\n"
                                          "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo } }\n");
  std::vector<double> ms;
  {
    testing::DaemonProcess daemon(dir / "d.yaml");
    const std::string pipectl = std::string(PIPECTL_BINARY) + " --socket " + dir / "dstate/admin.sock";
    for (int round = 0; round < 10; ++round) {
      if (std::system((pipectl + " rollout --percent 100 --pipeline p > /dev/null").c_str()) != 0) return 1;
      std::atomic<bool> stop{false};
      std::atomic<long long> first_stable_us{0};
      std::atomic<long long> start_us{0};
      std::thread client([&] {
        testing::HttpClient c(daemon.port());
        while (!stop) {
          auto r = c.request(testing::http::verb::post, "/run", "{}", "application/json", {{"X-User-Id", "u"}});
          const long long now = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
          if (start_us && r["X-Pipelined-Arm"] == "stable" && !first_stable_us) first_stable_us = now;
        }
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      start_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
      if (std::system((pipectl + " rollback --reason bench > /dev/null").c_str()) != 0) return 1;
      while (!first_stable_us) std::this_thread::sleep_for(std::chrono::microseconds(100));
      stop = true;
      client.join();
      ms.push_back((first_stable_us - start_us) / 1000.0);
    }
  }
  std::printf("pipectl rollback -> first request on stable: median %.1f ms, max %.1f ms over 10 rollbacks (goal: <= 50 ms)\n",
              percentile(ms, 0.5), *std::max_element(ms.begin(), ms.end()));
  return 0;
}

// The daemon's added latency: a two-stage no-op pipeline (test_echo -> test_echo2) over HTTP
// keep-alive against the same two plugins run directly in process through the engine, plus
// requests per second with several connections. Run: build/bench/http_overhead [requests]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "daemon/engine/engine.h"
#include "daemon/plugin_host/plugin_host.h"
#include "tests/server/daemon_process.h"

using namespace pipelined;
using Clock = std::chrono::steady_clock;

namespace {

struct Figures {
  double p50_us, p99_us;
};

Figures percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[v.size() * 99 / 100]};
}

double micros(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
  const int requests = argc > 1 ? std::atoi(argv[1]) : 20000;
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "plugins");
  testing::install_plugin(dir / "plugins", "test_echo");
  testing::install_plugin(dir / "plugins", "test_echo2");
  const std::string yaml = "server:\n  listen: 127.0.0.1:0\n  io_threads: 1\nworker_threads: 2\nplugin_directory: " + dir / "plugins" +
                           "\nstate_directory: " + dir / "state" + "\nmetrics:\n  database: " + dir / "state/metrics.db" +
                           "\npipelines:\n  p:\n    stages:\n"
                           "      echo: { variants: { serial: { plugin: test_echo } }, stable: serial }\n"
                           "      echo2: { needs: [echo], variants: { serial: { plugin: test_echo2 } }, stable: serial }\n"
                           "endpoints:\n  - { method: POST, path: /run, pipeline: p, request: { format: json }, response: { out: $stages.echo2 } }\n";
  testing::write_file(dir / "bench.yaml", yaml);
  const std::string body = R"({"user": "u-1", "text": "a small request body"})";

  // The same plugins in process through the engine (no HTTP), and over HTTP from the daemon,
  // interleaved request by request so both see the same state of this shared machine.
  auto config = config::load_string(yaml).config;
  pool::WorkerPool pool(2);
  engine::Engine engine(pool, nullptr);
  plugin_host::PluginHost host(engine.services());
  if (!host.load(config).empty()) return std::fprintf(stderr, "plugins did not load\n"), 1;
  testing::DaemonProcess daemon(dir / "bench.yaml");
  testing::HttpClient client(daemon.port());
  std::vector<double> direct, over_http;
  for (int i = 0; i < requests; ++i) {
    engine::RunRequest r;
    r.pipeline = "p";
    r.deadline = Clock::now() + std::chrono::seconds(10);
    r.input.json = nlohmann::json::parse(body);
    auto t0 = Clock::now();
    auto result = engine.run_sync(host.current(), std::move(r));
    direct.push_back(micros(t0, Clock::now()));
    if (!result.ok) return std::fprintf(stderr, "direct run failed\n"), 1;
    t0 = Clock::now();
    auto response = client.request(testing::http::verb::post, "/run", body);
    over_http.push_back(micros(t0, Clock::now()));
    if (response.result_int() != 200) return std::fprintf(stderr, "HTTP %d\n", response.result_int()), 1;
  }

  // Throughput: 4 keep-alive connections for 3 seconds.
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      testing::HttpClient client(daemon.port());
      while (!stop) {
        client.request(testing::http::verb::post, "/run", body);
        ++done;
      }
    });
  }
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (auto& t : clients) t.join();
  const double rps = done / std::chrono::duration<double>(Clock::now() - t0).count();

  const Figures d = percentiles(direct), h = percentiles(over_http);
  std::printf("command: %s %d\n", argv[0], requests);
  std::printf("two-stage no-op pipeline, %d sequential requests each way, interleaved\n", requests);
  std::printf("  in process (engine only):   p50 %8.1f us   p99 %8.1f us\n", d.p50_us, d.p99_us);
  std::printf("  over HTTP keep-alive:       p50 %8.1f us   p99 %8.1f us\n", h.p50_us, h.p99_us);
  std::printf("  added by the daemon:        p50 %8.1f us   p99 %8.1f us   (goal: p50 <= 50 us)\n", h.p50_us - d.p50_us,
              h.p99_us - d.p99_us);
  std::printf("throughput, 4 keep-alive connections, 3 s: %.0f requests/s\n", rps);
  return 0;
}

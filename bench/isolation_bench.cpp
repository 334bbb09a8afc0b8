// What `isolation: process` adds to one stage call: a one-stage no-op pipeline (tests/plugins'
// test_echo) run through the engine, in-process against isolated (the same plugin in a runner
// process), the two interleaved in one run so machine noise falls on both alike.
//
//   build/bench/isolation_bench [--requests 5000] [--payload-kb 0]   (payload: an attachment of that size)
#include "daemon/config/config.h"
#include "daemon/engine/engine.h"
#include "daemon/plugin_host/plugin_host.h"
#include "daemon/pool/worker_pool.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>
#include "bench/stats.h"

namespace {

using pipelined::bench::percentile;

namespace fs = std::filesystem;
using pipelined::engine::Clock;

}  // namespace

int main(int argc, char** argv) {
  int requests = 5000, payload_kb = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--requests")
      requests = std::stoi(argv[i + 1]);
    else if (a == "--payload-kb")
      payload_kb = std::stoi(argv[i + 1]);
    else {
      std::cerr << "usage: " << argv[0] << " [--requests N] [--payload-kb N]\n";
      return 2;
    }
  }
  const fs::path dir = fs::temp_directory_path() / ("isolation-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir / "plugins");
  for (const char* p : {"test_echo", "test_echo_parallel"}) {
    fs::copy_file(fs::path(PIPELINED_TEST_PLUGIN_DIR) / (std::string(p) + ".so"), dir / "plugins" / (std::string(p) + ".so"));
    fs::permissions(dir / "plugins" / (std::string(p) + ".so"), fs::perms(0755));
  }
  const std::string yaml =
      "plugin_directory: " + (dir / "plugins").string() + "\nstate_directory: " + (dir / "state").string() +
      "\nrunner_path: " PIPELINED_RUNNER
      "\npipelines:\n  noop:\n    stages:\n"
      "      echo: { variants: { serial: { plugin: test_echo }, parallel: { plugin: test_echo_parallel, isolation: process } },"
      " stable: serial }\n";
  auto loaded = pipelined::config::load_string(yaml, "isolation_bench");
  if (!loaded.errors.empty()) {
    std::cerr << loaded.errors.front().to_string() << "\n";
    return 1;
  }
  pipelined::pool::WorkerPool pool(4);
  pipelined::engine::Engine engine(pool, nullptr);
  pipelined::plugin_host::PluginHost host(engine.services());
  if (auto errors = host.load(loaded.config); !errors.empty()) {
    std::cerr << errors.front().to_string() << "\n";
    return 1;
  }
  // An image-like attachment: the stage hands it back, so it crosses the socket both ways.
  const auto image = std::make_shared<const std::string>(static_cast<std::size_t>(payload_kb) * 1024, 'x');
  std::vector<double> in_process_us, isolated_us;
  for (int i = 0; i < requests + 200; ++i) {  // the first 200 of each warm up
    for (const char* variant : {"serial", "parallel"}) {
      pipelined::engine::RunRequest r;
      r.request_id = "bench";
      r.pipeline = "noop";
      r.deadline = Clock::now() + std::chrono::seconds(10);
      r.input.json = {{"n", i}};
      if (payload_kb > 0) r.input.attachments = {{"image", "image/png", image}};
      r.variants = {{"echo", variant}};
      const auto start = Clock::now();
      const auto result = engine.run_sync(host.current(), std::move(r));
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
      if (!result.ok) {
        std::cerr << variant << " failed: " << result.error_class << ": " << result.error_message << "\n";
        return 1;
      }
      if (i >= 200) (std::string(variant) == "serial" ? in_process_us : isolated_us).push_back(us);
    }
  }
  std::printf("## isolation: one no-op stage call, %d requests each, attachment %d KiB\n\n", requests, payload_kb);
  std::printf("| variant | p50 us | p90 us | p99 us |\n|---|---|---|---|\n");
  std::printf("| in-process | %.1f | %.1f | %.1f |\n", percentile(in_process_us, 0.5), percentile(in_process_us, 0.9),
              percentile(in_process_us, 0.99));
  std::printf("| isolated | %.1f | %.1f | %.1f |\n\n", percentile(isolated_us, 0.5), percentile(isolated_us, 0.9),
              percentile(isolated_us, 0.99));
  std::printf("added by isolation: p50 %.1f us (goal: at most 50 us)\n", percentile(isolated_us, 0.5) - percentile(in_process_us, 0.5));
  std::printf("command: %s --requests %d --payload-kb %d\n", argv[0], requests, payload_kb);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

// The daemon's side of `isolation: process`: an IsolatedVariant owns the runner process (runner.h)
// of one variant instance and forwards that instance's runs to it. To the engine it is a plugin
// like any other: run() hands the run to the runner and returns PL_RUN_PENDING, and the run ends
// through the engine's host services when the runner's answer comes.
//
// The supervisor's promises:
//  - A runner that dies (signal, abort, exit, OOM kill) or hangs (a run past its deadline by more
//    than hang_grace: the runner is killed) fails only the runs in flight in it, with error class
//    PL_ERR_CRASHED; they fall back to stable like any candidate failure.
//  - It restarts the runner with exponential backoff (0.25 s doubling to 30 s; back to 0.25 s after
//    a minute without a crash); while no runner is up, runs fail at once with PL_ERR_CRASHED.
//  - Each runner gets RLIMIT_AS = memory_limit_bytes, and its resident memory is sampled: a
//    per-variant figure no allocator accounting can skew.
//  - Destruction (the last request let go of the variant's instance set, after a reload) asks the
//    runner to destroy the instance and exit, and kills it if it has not within 5 s.
#pragma once

#include <pipelined/plugin_abi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace pipelined::isolation {

struct RunnerOptions {
  std::string runner_path;              // the pipelined-runner executable
  std::string plugin_file;              // the plugin to load: a private copy, removed when the variant goes
  std::string config_json;              // the variant's config, for create()
  std::string label;                    // "<pipeline>/<stage>/<variant>", for logs
  unsigned threads = 8;                 // the runner's worker pool
  std::int64_t memory_limit_bytes = 0;  // RLIMIT_AS of the runner; 0: none
  std::chrono::milliseconds hang_grace{2000};
  std::chrono::milliseconds startup_timeout{20000};
};

struct RunnerStats {
  int pid = 0;  // 0 while no runner is up
  bool up = false;
  std::int64_t rss_bytes = 0;       // last sample of the runner's resident set
  std::int64_t instance_bytes = 0;  // heap the plugin's create() kept (the runner's accounting)
  std::uint64_t crashes = 0;        // runners that died or were killed as hung
  std::uint64_t restarts = 0;       // runners started after the first
  std::uint64_t runs_in_flight = 0;
  std::string last_crash;  // "signal 11 (Segmentation fault)", "hung: ...", ...
};

class IsolatedVariant {
 public:
  // Starts the runner and creates the instance in it. Null, with `error` set, when the runner cannot
  // be started or refuses the plugin (the same checks as in-process: plugin_host/descriptor_check.h).
  // `host` (the engine's services, which must offer PL_SERVICES_ASYNC_RUNS) must outlive the variant.
  static std::unique_ptr<IsolatedVariant> start(const RunnerOptions& options, const pl_host_services* host, std::string& error);
  ~IsolatedVariant();
  IsolatedVariant(const IsolatedVariant&) = delete;
  IsolatedVariant& operator=(const IsolatedVariant&) = delete;

  // The ABI's run(): forwards the run; PL_RUN_PENDING, or PL_RUN_ERROR (class crashed) when no runner is up.
  int run(pl_run_context* ctx, const pl_payload* input);

  // The plugin's descriptor strings, as the runner read them.
  const std::string& plugin_name() const;
  const std::string& plugin_version() const;
  const std::string& stage() const;
  const std::string& variant() const;

  RunnerStats stats() const;

  struct Impl;

 private:
  explicit IsolatedVariant(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::isolation

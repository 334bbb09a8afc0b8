// Runs one pipeline request over a PluginSet: stages form a graph by their `needs`; stages with no
// path between them run at the same time on the worker pool; `input: stream` stages start with
// their upstream and read its items as they are emitted. Per stage, on failure: fail the request,
// or keep the completed stages' results and mark what is missing (partial); a non-stable variant
// that fails (or passes its timeout) reruns on the stable variant when fallback is on.
#pragma once

#include "daemon/plugin_host/plugin_host.h"
#include "daemon/pool/worker_pool.h"

#include <pipelined/sdk.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pipelined::outbound {
class OutboundClient;
}

namespace pipelined::engine {

using Payload = sdk::Payload;
using Clock = std::chrono::steady_clock;

struct RunEvent;

struct RunRequest {
  std::string request_id;
  std::string pipeline;
  Clock::time_point deadline;
  // When the user's request arrived (a whole-request fallback keeps it): the request's outbound
  // calls wait behind those of older requests only. Unset (the epoch): when the engine starts the run.
  Clock::time_point arrived{};
  Payload input;
  // stage -> variant to run; a stage not listed runs its stable variant.
  std::map<std::string, std::string> variants;
  // Set to true to cancel (client went away, daemon draining past its timeout).
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  // Heap cap of the whole request (0: none). Past it the request is cancelled and fails with class
  // PL_ERR_MEMORY; heap a plugin's runner process (isolation: process) uses is not counted here.
  std::int64_t memory_limit_bytes = 0;
  // Optional: told as stages end or fall back and as stages emit items (RunEvent), for a caller that
  // shows progress. Called on pool and plugin threads, never under an engine lock, possibly from
  // several stages at once: it must be cheap and thread-safe. Every call for a stage end happens
  // before `done`; an item emitted by an abandoned run can still arrive after it.
  std::function<void(const RunEvent&)> observer;
};

enum class StageStatus { Ok, Failed, Skipped /* a need failed */, FellBack /* candidate failed, stable ran ok */ };

struct StageRecord {
  std::string stage;
  std::string variant;  // the variant whose output was used (stable after a fallback)
  std::string requested_variant;
  std::string plugin_name;
  std::string plugin_version;
  StageStatus status = StageStatus::Ok;
  int attempts = 0;  // 2 after a fallback
  std::string error_class;  // of the failing attempt, also kept after a successful fallback
  std::string error_message;
  Clock::time_point started;
  std::chrono::microseconds duration{0};
  std::int64_t peak_bytes = 0;
};

struct RunEvent {
  enum class Kind {
    StageEnded,        // `record` is the stage's final record (ok, failed, fell back)
    StageFallingBack,  // `record` is the failed attempt's; the stage reruns on its stable variant now
    Item,              // `item` is a new item the stage emitted (a fallback rerun's repeats are not told)
  };
  Kind kind = Kind::StageEnded;
  std::string_view stage;
  const StageRecord* record = nullptr;   // StageEnded, StageFallingBack
  const nlohmann::json* item = nullptr;  // Item
};

struct RunResult {
  bool ok = false;       // every stage produced output (possibly after fallback)
  bool partial = false;  // some stages failed with on_failure: partial; outputs has the others
  std::map<std::string, Payload> outputs;  // stage -> output
  std::vector<std::string> missing;        // stages without output
  std::vector<StageRecord> stages;         // in completion order
  std::string error_class;                 // first failure when !ok
  std::string error_message;
  bool fell_back = false;                  // any stage fell back to stable
  std::int64_t peak_bytes = 0;             // request peak heap bytes
  std::chrono::microseconds duration{0};
};

class Engine {
 public:
  // `outbound` may be null: plugins then get PL_ERROR from http_send.
  Engine(pool::WorkerPool& pool, outbound::OutboundClient* outbound);

  // The host services table every plugin gets in create(); pass it to PluginHost.
  const pl_host_services* services() const;

  // Waits (up to 10 s) for asynchronous plugin runs the engine stopped waiting for to call complete().
  ~Engine();

  // Starts the request; `done` runs exactly once, on a pool thread, when every stage has ended.
  // `plugins` is held until then, so a hot swap meanwhile does not unload what this request uses.
  void run(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request,
           std::function<void(RunResult)> done);

  // run() and wait; for tests and benchmarks.
  RunResult run_sync(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request);

 private:
  struct Impl;  // engine_impl.h
  std::unique_ptr<Impl> impl_;
};

const char* to_string(StageStatus status);

}  // namespace pipelined::engine

// The state one request's run shares between the engine's source files (engine internal; not part
// of engine.h): RequestRun (one request), StageRun (one stage of it), and pl_run_context, the ABI's
// opaque handle for one attempt of one stage that the host services act on.
#pragma once

#include "daemon/engine/engine.h"
#include "daemon/engine/item_stream.h"
#include "daemon/memory/memory_account.h"

#include <pipelined/payload.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pipelined::engine {

class Scheduler;

enum class State { Waiting, Running, Done, Failed, Skipped };

struct StageRun {
  const config::StageConfig* config = nullptr;
  std::string variant;  // requested
  State state = State::Waiting;
  int blockers = 0;                         // dependencies not yet satisfied
  std::vector<StageRun*> unblock_on_end;    // stages waiting for this one to end
  std::vector<StageRun*> unblock_on_start;  // stream consumers, which start with this one
  std::vector<StageRun*> needed_by;         // stages that read this one's output
  StageRun* stream_source = nullptr;
  std::shared_ptr<ItemStream> emitted = std::make_shared<ItemStream>();
  Payload input;  // kept for a fallback rerun
  Payload output;
  StageRecord record;
  std::string first_error_class, first_error_message;  // of a failed first attempt
  std::int64_t peak = 0;
};

struct RequestRun {
  Scheduler* scheduler = nullptr;
  pool::WorkerPool* pool = nullptr;
  outbound::OutboundClient* outbound = nullptr;
  std::shared_ptr<const plugin_host::PluginSet> plugins;
  const config::PipelineConfig* pipeline = nullptr;
  RunRequest request;
  std::function<void(RunResult)> done;
  Clock::time_point started = Clock::now();
  memory::MemoryAccount account;

  std::mutex mu;
  std::vector<StageRun> stages;  // pipeline order; never resized after start
  int running = 0;
  bool finished = false;
  RunResult result;
};

}  // namespace pipelined::engine

// One attempt of one stage of one request: what the host services act on. Heap-allocated (see
// Watchdog::new_context): a run that returned PL_RUN_PENDING keeps it until complete(), possibly
// after the engine stopped waiting.
struct pl_run_context {
  enum Phase { Running, Completed /* the plugin ended the run */, Abandoned /* the engine stopped waiting */ };

  std::shared_ptr<pipelined::engine::RequestRun> request;  // kept alive (plugins, stages) while the plugin holds ctx
  pipelined::engine::StageRun* stage = nullptr;
  pipelined::engine::Clock::time_point deadline;  // min(request deadline, stage timeout)
  bool stage_timeout_limits = false;               // deadline comes from the stage's timeout
  // Shared with the tasks post() runs under it, so it outlives the last of them.
  std::shared_ptr<pipelined::memory::MemoryAccount> account = std::make_shared<pipelined::memory::MemoryAccount>();
  std::atomic<int> phase{Running};
  // Holders: the plugin until complete(), plus the engine's abandon() while it is queued or runs.
  // The last Watchdog::release() frees the context.
  std::atomic<int> holders{1};
  std::mutex mu;              // orders complete() against run() returning PL_RUN_PENDING
  bool run_returned = false;  // guarded by mu
  bool completed = false;     // guarded by mu: complete() was called ...
  int completed_status = PL_RUN_ERROR;  // ... with this status
  std::optional<pipelined::engine::Payload> output;
  std::string error_class, error_message;
  std::vector<pipelined::engine::Payload> emitted;  // in order, for {"items": [...]}
  std::size_t read_cursor = 0;
  std::optional<pipelined::sdk::EncodedPayload> current_item;  // valid until the next next_item
};

struct pl_task_group {
  explicit pl_task_group(pipelined::pool::WorkerPool& pool) : group(pool) {}
  pipelined::pool::TaskGroup group;
};

namespace pipelined::engine {

// Whether the attempt should stop: its request was cancelled, its deadline passed, or the engine
// stopped waiting for it.
inline bool cancelled(const pl_run_context* ctx) {
  return ctx->request->request.cancelled->load(std::memory_order_relaxed) || Clock::now() >= ctx->deadline ||
         ctx->phase.load() == pl_run_context::Abandoned;
}

}  // namespace pipelined::engine

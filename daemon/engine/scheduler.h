// The engine's scheduler (engine internal; not part of engine.h): runs one request's stage graph on
// the worker pool. It starts stages as their needs end (stream consumers with their upstream),
// runs each stage's attempts (a fallback rerun on stable), skips what cannot run, and assembles the
// RunResult when every stage has ended.
#pragma once

#include "daemon/engine/engine.h"

#include <functional>
#include <memory>
#include <mutex>
#include <string>

struct pl_run_context;

namespace pipelined::memory {
class MemoryAccount;
}

namespace pipelined::engine {

struct RequestRun;
struct StageRun;
class Watchdog;

class Scheduler {
 public:
  // `watchdog` is told about pending runs and creates and frees run contexts; it may be
  // constructed after the scheduler, and must be in use only once it is.
  Scheduler(pool::WorkerPool& pool, outbound::OutboundClient* outbound, Watchdog& watchdog);

  // Engine::run: starts the request on a pool thread; `done` runs once, when every stage has ended.
  void run(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request,
           std::function<void(RunResult)> done);

  // The plugin ended an attempt with `rc` (run()'s return value or complete()'s status).
  void finish_attempt(pl_run_context* ctx, int rc);
  // The watchdog gave up on a pending attempt (deadline or cancellation); the stage goes on without it.
  void abandon(pl_run_context* ctx);
  // Drops one holder of ctx (see Watchdog::release).
  void release(pl_run_context* ctx);

  // Queues fn on the pool under `account` (null: none), not under the submitting thread's.
  void submit(memory::MemoryAccount* account, std::function<void()> fn);

 private:
  void start(const std::shared_ptr<RequestRun>& run);
  void start_ready(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock);
  void launch(const std::shared_ptr<RequestRun>& run, StageRun& stage);
  void execute(const std::shared_ptr<RequestRun>& run, StageRun& stage);
  void start_attempt(const std::shared_ptr<RequestRun>& run, StageRun& stage, const std::string& variant);
  void attempt_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok);
  void stage_ended(const std::shared_ptr<RequestRun>& run, StageRun& stage, bool ok);
  void skip_dependants(RequestRun& run, StageRun& stage);
  void maybe_finish(const std::shared_ptr<RequestRun>& run, std::unique_lock<std::mutex>& lock);
  Payload input_of(RequestRun& run, const StageRun& stage);

  pool::WorkerPool& pool_;
  outbound::OutboundClient* outbound_;
  Watchdog& watchdog_;
};

}  // namespace pipelined::engine

// Engine (engine.h): the public entry point. It owns the host services table, the watchdog and the
// scheduler (engine_impl.h) and hands requests to the scheduler.
#include "daemon/engine/engine.h"

#include "daemon/engine/engine_impl.h"

#include <future>
#include <utility>

namespace pipelined::engine {

const char* to_string(StageStatus status) {
  switch (status) {
    case StageStatus::Ok: return "ok";
    case StageStatus::Failed: return "failed";
    case StageStatus::Skipped: return "skipped";
    case StageStatus::FellBack: return "fell_back";
  }
  return "unknown";
}

Engine::Engine(pool::WorkerPool& pool, outbound::OutboundClient* outbound) : impl_(std::make_unique<Impl>(pool, outbound)) {}

Engine::~Engine() = default;

const pl_host_services* Engine::services() const { return &impl_->services; }

void Engine::run(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request, std::function<void(RunResult)> done) {
  impl_->scheduler.run(std::move(plugins), std::move(request), std::move(done));
}

RunResult Engine::run_sync(std::shared_ptr<const plugin_host::PluginSet> plugins, RunRequest request) {
  std::promise<RunResult> promise;
  auto future = promise.get_future();
  run(std::move(plugins), std::move(request), [&promise](RunResult r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace pipelined::engine

// Watchdog (watchdog.h): the thread that gives up on pending runs past their deadline or
// cancellation, and the reference counting that frees a run context after its last holder.
#include "daemon/engine/watchdog.h"

#include "daemon/engine/run_context.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>

namespace pipelined::engine {

Watchdog::Watchdog(Abandon abandon) : abandon_(std::move(abandon)) {
  thread_ = std::thread([this] { watch_pending(); });
}

Watchdog::~Watchdog() { stop(); }

pl_run_context* Watchdog::new_context() {
  auto* ctx = new pl_run_context;
  std::lock_guard lock(live_mu_);
  ++live_contexts_;
  return ctx;
}

void Watchdog::release(pl_run_context* ctx) {
  if (--ctx->holders > 0) return;
  delete ctx;
  std::lock_guard lock(live_mu_);
  if (--live_contexts_ == 0) live_cv_.notify_all();
}

void Watchdog::watch(pl_run_context* ctx) {
  std::lock_guard lock(pending_mu_);
  pending_.insert(ctx);
  pending_cv_.notify_one();
}

void Watchdog::unwatch(pl_run_context* ctx) {
  std::lock_guard lock(pending_mu_);
  pending_.erase(ctx);
}

void Watchdog::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(pending_mu_);
    stopping_ = true;
  }
  pending_cv_.notify_all();
  thread_.join();
  std::unique_lock lock(live_mu_);
  if (!live_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return live_contexts_ == 0; }))
    spdlog::error("engine: {} plugin runs never called complete(); their contexts are leaked", live_contexts_);
}

void Watchdog::watch_pending() {
  std::unique_lock lock(pending_mu_);
  while (!stopping_) {
    if (pending_.empty()) {
      pending_cv_.wait(lock);
      continue;
    }
    // The period bounds how late a cancellation or a deadline is noticed.
    pending_cv_.wait_for(lock, std::chrono::milliseconds(20));
    for (auto it = pending_.begin(); it != pending_.end();) {
      // A context in `pending_` is alive: a completed run is unwatched under pending_mu_ first.
      pl_run_context* ctx = *it;
      if (!cancelled(ctx)) {
        ++it;
        continue;
      }
      ++ctx->holders;  // before the phase changes: from then on the plugin's complete() releases
      int expected = pl_run_context::Running;
      if (!ctx->phase.compare_exchange_strong(expected, pl_run_context::Abandoned)) {
        --ctx->holders;  // it completed meanwhile; finishing the attempt unwatches it
        ++it;
        continue;
      }
      it = pending_.erase(it);
      spdlog::warn("[{}] {}/{}: run still pending at its deadline or cancellation; going on without it",
                   ctx->request->request.request_id, ctx->request->pipeline->name, ctx->stage->config->name);
      abandon_(ctx);
    }
  }
}

}  // namespace pipelined::engine

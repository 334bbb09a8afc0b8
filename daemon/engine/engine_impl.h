// Engine::Impl and what the engine's source files share beyond run_context.h (engine internal; not
// part of engine.h): the host services table, the watchdog and the scheduler of one Engine.
#pragma once

#include "daemon/engine/engine.h"
#include "daemon/engine/scheduler.h"
#include "daemon/engine/watchdog.h"

namespace pipelined::engine {

// The host services table (host_services.cpp); the same functions for every engine.
pl_host_services make_host_services();

struct Engine::Impl {
  pl_host_services services = make_host_services();
  // Declared before the scheduler, which it hands abandoned runs to: the watchdog thread uses the
  // scheduler only for runs the scheduler started.
  Watchdog watchdog;
  Scheduler scheduler;

  Impl(pool::WorkerPool& pool, outbound::OutboundClient* outbound)
      : watchdog([this](pl_run_context* ctx) { scheduler.submit(nullptr, [this, ctx] { scheduler.abandon(ctx); }); }),
        scheduler(pool, outbound, watchdog) {}

  // Stops the watchdog and waits for the contexts of abandoned runs while the scheduler, which
  // their complete() and queued abandonments call, still exists.
  ~Impl() { watchdog.stop(); }
};

}  // namespace pipelined::engine

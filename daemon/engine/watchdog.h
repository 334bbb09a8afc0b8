// The engine's watchdog (engine internal; not part of engine.h): watches runs that returned
// PL_RUN_PENDING for their deadline and their request's cancellation, and counts run contexts, which
// are reference counted so that an abandoned run keeps its context until its complete().
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

struct pl_run_context;

namespace pipelined::engine {

class Watchdog {
 public:
  // Called on the watchdog's thread, under its lock, for each run it gave up on: it only queues
  // the abandonment, which then owns one holder of the context.
  using Abandon = std::function<void(pl_run_context*)>;

  explicit Watchdog(Abandon abandon);  // starts the watchdog thread
  ~Watchdog();                         // stop()
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // A new context with one holder (the plugin's run), counted until its last release().
  pl_run_context* new_context();
  // Drops one holder; the last one frees the context.
  void release(pl_run_context* ctx);

  // Watches a run that returned PL_RUN_PENDING and has not completed.
  void watch(pl_run_context* ctx);
  // Stops watching a run that completed; nothing happens for a context not watched.
  void unwatch(pl_run_context* ctx);

  // Ends the watchdog thread, then waits up to 10 s for every context to be released (abandoned
  // runs release theirs in complete()). Later calls do nothing.
  void stop();

 private:
  void watch_pending();

  Abandon abandon_;

  // Runs that returned PL_RUN_PENDING, watched for their deadline and their request's cancellation:
  // past either, the engine stops waiting (abandons the run) and goes on without its output.
  std::mutex pending_mu_;
  std::condition_variable pending_cv_;
  std::set<pl_run_context*> pending_;
  bool stopping_ = false;
  std::thread thread_;

  // Contexts not yet released: an abandoned run holds its context until it calls complete().
  std::mutex live_mu_;
  std::condition_variable live_cv_;
  int live_contexts_ = 0;
};

}  // namespace pipelined::engine

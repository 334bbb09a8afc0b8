// Replicas sharing one database (PostgreSQL). Each replica's thread re-reads the rollout state when
// another replica tells it of a change (LISTEN/NOTIFY) and every replica_poll besides, and writes
// its heartbeat: who it is, whether it holds the lease, and up to when its rows are all written.
// The lease holder alone judges guardrails and takes steps (schedule.cpp); if it dies, its
// connection closes, the lease is free, and the next heartbeat of another replica takes it.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "rollout/controller_impl.h"

namespace pipelined::rollout {

void RolloutController::Impl::refresh_state() {
  std::lock_guard serial(change_mu);
  for (auto it = unpersisted.begin(); it != unpersisted.end();) {
    Rollout r = it->second.first;
    store->save(r, it->second.second);  // throws while the database is still away: keep serving what we have
    spdlog::info("rollout {} ({}): {} written now that the database is back", r.id, r.pipeline, it->second.second.action);
    it = unpersisted.erase(it);
  }
  load_state();
}

void RolloutController::Impl::heartbeat() {
  const auto settings = cfg();
  const std::int64_t now = now_ms();
  // Every request that started before `complete` and is not running any more has been recorded;
  // once the writer has written what was queued, the row says so.
  std::int64_t complete = now;
  {
    std::lock_guard lock(running_mu);
    for (const auto& [pipeline, starts] : running)
      if (!starts.empty()) complete = std::min(complete, *starts.begin());
  }
  writer->flush();
  {
    // Two replicas configured with one id overwrite each other's heartbeat: say so, once.
    std::lock_guard lock(replicas_mu);
    for (const auto& r : replicas)
      if (r.id == settings->replica_id && r.pid != static_cast<std::int64_t>(::getpid()) &&
          now - r.seen_ms <= settings->replica_timeout.count() && r.started_ms != started_ms && !warned_duplicate_id) {
        spdlog::error("replica {}: another process ({} pid {}) uses this replica id; give each replica its own replica.id", r.id, r.host,
                      r.pid);
        warned_duplicate_id = true;
      }
  }
  if (writer->counters().waiting) {  // the database is away: nothing to say, nothing to decide
    deciding = false;
    return;
  }
  try {
    const bool lease = store->hold_lease();
    if (lease != deciding.exchange(lease) && (lease || heartbeats > 0))
      spdlog::info("replica {}: {}", settings->replica_id,
                   lease ? "took the lease: this replica decides guardrails and steps" : "lost the lease: another replica decides");
    store->heartbeat({settings->replica_id, settings->replica_host, static_cast<std::int64_t>(::getpid()), started_ms, now,
                      plugin_generation(), lease, complete});
    auto rows = store->replicas();
    ++heartbeats;
    std::lock_guard lock(replicas_mu);
    replicas = std::move(rows);
  } catch (const std::exception& e) {
    deciding = false;  // a replica that cannot reach the database decides nothing
    spdlog::warn("replica {}: heartbeat failed: {}", settings->replica_id, e.what());
  }
}

std::int64_t RolloutController::Impl::others_complete(std::int64_t now) const {
  const auto settings = cfg();
  std::int64_t complete = INT64_MAX;
  std::lock_guard lock(replicas_mu);
  for (const auto& r : replicas)
    if (r.id != settings->replica_id && now - r.seen_ms <= settings->replica_timeout.count()) complete = std::min(complete, r.complete_ms);
  return complete;
}

std::unique_ptr<ChangeListener> RolloutController::Impl::listen() {
  try {
    return store->listen();
  } catch (const std::exception& e) {
    spdlog::warn("replica {}: cannot listen for rollout changes, polling: {}", cfg()->replica_id, e.what());
    return nullptr;
  }
}

void RolloutController::Impl::replica_loop(std::unique_ptr<ChangeListener> listener) {
  auto last_poll = std::chrono::steady_clock::now();
  auto last_listen_attempt = last_poll;
  bool listen_failed_logged = !listener;
  for (;;) {
    {
      std::lock_guard lock(scheduler_mu);
      if (stopping) return;
    }
    const auto poll = cfg()->replica_poll;
    const auto now = std::chrono::steady_clock::now();
    if (!listener && now - last_listen_attempt >= poll) {
      last_listen_attempt = now;
      try {
        listener = store->listen();
        if (listen_failed_logged) spdlog::info("replica {}: listening for rollout changes again", cfg()->replica_id);
        listen_failed_logged = false;
      } catch (const std::exception& e) {
        if (!listen_failed_logged) spdlog::warn("replica {}: cannot listen for rollout changes, polling: {}", cfg()->replica_id, e.what());
        listen_failed_logged = true;
      }
    }
    // Short waits, so that stop() is never kept waiting long.
    const auto wait = std::min<std::chrono::milliseconds>(poll, std::chrono::milliseconds(250));
    bool notified = false;
    if (listener) {
      try {
        notified = listener->wait(wait);
      } catch (const std::exception& e) {
        spdlog::warn("replica {}: lost the notification connection, polling until it is back: {}", cfg()->replica_id, e.what());
        listener.reset();
      }
    } else {
      std::unique_lock lock(scheduler_mu);
      scheduler_wake.wait_for(lock, wait, [this] { return stopping; });
    }
    if (!notified && std::chrono::steady_clock::now() - last_poll < poll) continue;
    try {
      refresh_state();
    } catch (const std::exception& e) {
      spdlog::warn("replica {}: cannot re-read the rollout state, serving the last known one: {}", cfg()->replica_id, e.what());
    }
    if (std::chrono::steady_clock::now() - last_poll >= poll) {
      last_poll = std::chrono::steady_clock::now();
      heartbeat();
    }
  }
}

}  // namespace pipelined::rollout

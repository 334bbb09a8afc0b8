// The controller's state and the operations behind RolloutController, shared by controller.cpp
// (operator actions, the request path), schedule.cpp (guardrails, steps, crash guard, retention) and
// controller_report.cpp. Internal: not part of rollout/'s interface.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "rollout/rollout.h"
#include "rollout/store.h"

namespace pipelined::rollout {

using nlohmann::json;

// What assign() reads: replaced whole on every change, never modified in place.
struct RolloutState {
  std::map<std::string, Rollout> latest;  // pipeline -> its most recent rollout
  std::map<std::string, std::map<std::string, std::string>> stable_overrides;
};

struct RolloutController::Impl {
  mutable std::mutex settings_mu;
  std::shared_ptr<const RolloutSettings> settings;
  mutable std::mutex state_mu;
  std::shared_ptr<const RolloutState> state = std::make_shared<RolloutState>();
  std::mutex change_mu;  // one operator or guardrail change at a time

  std::unique_ptr<MetricsStore> store;
  std::unique_ptr<RowWriter> writer;

  // Start times of the requests assigned on a live rollout that have not been recorded yet: the
  // guardrails judge only requests that started before the oldest of them, so a slow arm's slow
  // requests are never missing from the comparison (no survivorship bias).
  mutable std::mutex running_mu;
  mutable std::map<std::string, std::multiset<std::int64_t>> running;

  mutable std::mutex verdict_mu;
  std::map<std::string, Verdict> verdicts;  // pipeline -> last guardrail pass
  // rollout id -> the decision last recorded; the lease holder's only (emptied while another decides)
  std::map<std::int64_t, std::string> last_decision;

  std::mutex scheduler_mu;
  std::condition_variable scheduler_wake;
  bool stopping = false, started = false, stopped = false;
  std::thread scheduler;
  std::int64_t daemon_run_id = 0;

  // Replicas on a shared database (replica.cpp). With SQLite there is one replica: it decides.
  std::thread replica;
  std::atomic<bool> deciding{true};  // holds the lease: judges guardrails, takes steps, retention
  bool warned_duplicate_id = false;  // the replica thread's
  long heartbeats = 0;              // written so far; the replica thread's (start() writes the first)
  std::function<std::int64_t()> plugin_generation = [] { return std::int64_t{0}; };  // set before start()
  std::int64_t started_ms = 0;
  mutable std::mutex replicas_mu;
  std::vector<ReplicaRow> replicas;  // as read at the last heartbeat
  // Changes in effect here that the database did not take (it was down): written again, before the
  // state is re-read, so a rollback made during an outage is not undone by the stale row. Under
  // change_mu.
  std::map<std::string, std::pair<Rollout, RolloutEvent>> unpersisted;

  std::shared_ptr<const RolloutSettings> cfg() const {
    std::lock_guard lock(settings_mu);
    return settings;
  }
  std::shared_ptr<const RolloutState> snapshot() const {
    std::lock_guard lock(state_mu);
    return state;
  }

  void load_state();

  // The replica thread: re-reads the state on a notification or every replica_poll, and writes the
  // heartbeat (which also takes or keeps the lease).
  std::unique_ptr<ChangeListener> listen();  // nullptr, logged, when it fails
  void replica_loop(std::unique_ptr<ChangeListener> listener);
  void heartbeat();
  void refresh_state();
  // The oldest complete_ms of the other live replicas (INT64_MAX when none): the deciding replica
  // judges only requests every replica has written.
  std::int64_t others_complete(std::int64_t now) const;

  // Publishes the new rollout, then persists it with its event. A new rollout (id 0) is persisted
  // first, since its id is its salt. A rollback takes effect even when the database fails.
  Result<Changed> change(Rollout r, const std::string& actor, const std::string& action, const std::string& reason,
                         json details = json::object());

  // The pipeline an action without one means: the only active rollout, else the only pipeline.
  Result<std::string> pick_pipeline(const std::string& named) const;

  Result<Changed> start_or_update(const RolloutChange& c);

  Result<Changed> rollback(const Target& t, json details = json::object());

  Result<Changed> set_status(const Target& t, const std::string& action, json details = json::object());

  // After an unclean stop: a candidate that may have crashed the process gets no traffic until an
  // operator resumes it; resume restores the share it had.
  void guard_against_crash_loop(const std::string& crash_note);

  void schedule();

  void retention();

  // The first start time still running for `pipeline`, or now.
  std::int64_t complete_until(const std::string& pipeline, std::int64_t now) const;

  Verdict verdict_for(const Rollout& r, std::int64_t until);

  // The guardrails' verdict on every live rollout, on the requests every replica has written; kept
  // in `verdicts` for the status answer. Every replica judges, so `pipectl status` on any of them
  // shows the verdict; only the lease holder acts on it (evaluate).
  std::vector<std::pair<Rollout, Verdict>> judge_live();

  // judge_live, then on each verdict: roll back, pause, record a changed decision, take the next step.
  void evaluate();

  // The decision last recorded for rollout `id`: from memory, else from its events, so a replica
  // that has just taken the lease does not record the previous holder's decision again.
  std::string recorded_decision(std::int64_t id);

  // A verdict that changed without changing the rollout (collecting <-> keep) is an event too.
  void record_decision(const Rollout& r, const Verdict& v, const json& details);

  Result<json> report(const ReportQuery& q);
};

}  // namespace pipelined::rollout

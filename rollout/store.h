// Every SQL statement the controller runs on its own connection (rollout state, events, daemon
// runs, replicas, retention, the samples the guardrails and the report read), on either engine
// (database.h). The row writer (writer.h) has a connection of its own.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "rollout/database.h"
#include "rollout/guardrails.h"
#include "rollout/records.h"
#include "rollout/state.h"

namespace pipelined::rollout {

std::int64_t now_ms();

// Which requests a read covers: those of one rollout (0: served while none was live), started in
// [since_ms, until_ms).
struct Window {
  std::int64_t rollout_id = 0;
  std::int64_t since_ms = 0;
  std::int64_t until_ms = INT64_MAX;
};

// One request of an arm: what the report's time buckets count.
struct ArmRow {
  std::int64_t time_ms = 0;
  bool user_ok = false, own_ok = false, fell_back = false;
};

// One arm's rows for the report; `outcomes` is what the guardrails judge.
struct ArmSamples {
  ArmOutcomes outcomes;
  long ok = 0, partial = 0, errors = 0;
  std::map<std::string, long> user_error_classes;       // what users got
  std::map<std::string, std::vector<double>> figures;   // arm_figures() name -> values, in the order of `rows`
  std::vector<ArmRow> rows;
  std::map<std::string, std::vector<double>> stage_ms;  // stage -> durations
  std::map<std::string, long> stage_fallbacks;          // stage -> runs that fell back
};

class MetricsStore {
 public:
  // open_database(location); throws DatabaseError as it does.
  explicit MetricsStore(const std::string& location);

  const Database& database() const { return *db_; }

  // State. Every method throws DatabaseError when the database fails. save() and save_overrides()
  // tell the other replicas (Database::notify_change) in their transaction.
  std::vector<Rollout> latest_rollouts();  // the newest rollout of each pipeline
  std::optional<Rollout> rollout(std::int64_t id);
  std::map<std::string, std::map<std::string, std::string>> stable_overrides();
  // Writes the rollout (inserting it when its id is 0, which then gets its id) and the event, in
  // one transaction.
  void save(Rollout& rollout, RolloutEvent event);
  void save_overrides(const std::string& pipeline, const std::map<std::string, std::string>& variants);
  std::vector<RolloutEvent> events(std::int64_t rollout_id, int limit);  // newest first; rollout 0: all

  // Daemon runs of `replica`: whether its last one ended without a clean stop, then a new one.
  bool last_run_unclean(const std::string& replica);
  std::int64_t begin_run(const std::string& replica);
  void end_run(std::int64_t run_id);

  // Replicas: write this one's heartbeat; read every one's. hold_lease(): Database::hold_lease.
  void heartbeat(const ReplicaRow& row);
  std::vector<ReplicaRow> replicas();
  void forget_replica(const std::string& id);
  bool hold_lease();
  std::unique_ptr<ChangeListener> listen();  // Database::listen

  // Deletes request and shadow rows that started before `cutoff_ms`.
  void delete_before(std::int64_t cutoff_ms);

  // Samples of `pipeline` per arm ("stable", "candidate").
  std::map<std::string, ArmSamples> arms(const std::string& pipeline, const Window& window, bool with_stages);
  ShadowOutcomes shadow(const std::string& pipeline, const Window& window);
  // Requests per arm only (the sample-ratio test): a COUNT, not the rows.
  std::map<std::string, double> arm_counts(const std::string& pipeline, const Window& window);

 private:
  std::mutex mu_;
  std::unique_ptr<Database> db_;
};

}  // namespace pipelined::rollout

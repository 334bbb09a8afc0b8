// Rollout controller: which arm (stable or candidate variants) a request runs on, what it cost,
// and whether the candidate keeps its share. The request path touches only assign() and record();
// both read an immutable state snapshot and never wait on disk. Operator actions are typed
// methods with typed errors; the daemon maps them to HTTP (daemon/server/admin_rollout.cpp).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "rollout/guardrails.h"
#include "rollout/records.h"
#include "rollout/settings.h"
#include "rollout/state.h"
#include "rollout/writer.h"

namespace pipelined::rollout {

struct Error {
  enum class Kind {
    Invalid,      // the request names a bad value
    NotFound,     // no such pipeline or rollout
    Conflict,     // the rollout is not in a state the action applies to
    Unavailable,  // the metrics database failed
  };
  Kind kind = Kind::Invalid;
  std::string message;
};
template <class T>
using Result = std::variant<T, Error>;

struct RolloutChange {
  std::string pipeline;  // may be empty when one rollout is active or there is one pipeline
  double percent = 0;
  double shadow_percent = 0;
  std::map<std::string, std::string> stages;  // stage -> candidate variant; empty: each stage's configured candidate
  std::optional<std::vector<double>> steps;   // default: settings.steps
  std::optional<Millis> dwell;                // default: settings.step_dwell
  std::string actor = "operator";
  std::string reason;
};

struct Target {
  std::string pipeline;  // empty: rollback acts on every active rollout, the others on the only one
  std::string actor = "operator";
  std::string reason;
};

struct Changed {
  std::vector<Rollout> rollouts;
  bool persisted = true;  // false: in effect, but the database could not record it
};

struct ReportQuery {
  std::string pipeline;         // empty: every pipeline
  Millis since{3600000};        // requests that started this long ago or later
  std::int64_t rollout_id = 0;  // 0: the pipeline's latest rollout
};

struct Status {
  struct Pipeline {
    std::optional<Rollout> rollout;
    std::map<std::string, std::string> stable_overrides;
    std::optional<Verdict> verdict;  // the last guardrail pass
  };
  std::map<std::string, Pipeline> pipelines;
  std::vector<RolloutEvent> recent_events;
  WriterCounters metrics;
  // Replicas sharing the database (PostgreSQL); with SQLite, shared_database is false.
  bool shared_database = false;
  std::string replica_id;
  bool deciding = true;  // this replica holds the lease
  std::int64_t replica_timeout_ms = 5000;
  std::vector<ReplicaRow> replicas;
  nlohmann::json to_json() const;
};

class RolloutController {
 public:
  // Opens (creating and migrating) the metrics database and loads the persisted state. Throws
  // std::runtime_error with an actionable message when the database is newer than this binary or
  // cannot be opened at all.
  explicit RolloutController(RolloutSettings settings);
  ~RolloutController();  // stop()

  // Starts the writer thread and the guardrail schedule. After a daemon run that did not stop
  // cleanly, every rollout holding a share is paused at 0 % until resume(); `crash_note` (what the
  // dead run left, e.g. its fatal signal and suspect plugins) goes into the pause reason.
  void start(const std::string& crash_note = "");
  // Writes every queued row, stops the threads, marks the stop clean. Idempotent.
  void stop();
  void update_settings(RolloutSettings settings);

  // Arm for one request. `sticky_key` empty: assigned per request. `forced` is honoured only when
  // the settings allow it. Every assignment on a live rollout must be followed by record() with
  // its started_ms: until then the guardrails treat the request as running.
  Assignment assign(const std::string& pipeline, const std::string& sticky_key, std::optional<Arm> forced = std::nullopt) const;

  // Queues the row for the writer thread; never blocks on disk.
  void record(RequestRecord record);
  void record_shadow(ShadowRecord record);

  // "" when the bodies match under the shadow rules, else the JSON pointer of the first difference.
  std::string compare_outputs(const nlohmann::json& stable, const nlohmann::json& candidate) const;

  Result<Changed> start_or_update(const RolloutChange& change);
  Result<Changed> rollback(const Target& target);
  Result<Changed> promote(const Target& target);
  Result<Changed> pause(const Target& target);
  Result<Changed> resume(const Target& target);
  Status status() const;
  Result<nlohmann::json> report(const ReportQuery& query);

  // Where the replica's heartbeat reads the daemon's plugin generation (call before start()).
  void set_plugin_generation_source(std::function<std::int64_t()> source);

  // One guardrail and step pass now (the schedule runs it every guardrail_interval).
  void evaluate_guardrails_now();
  // Waits until every row recorded so far is written or counted lost.
  void flush();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::rollout

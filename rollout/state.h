// A rollout as the controller keeps it: one row of `rollouts`, and the events that changed it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipelined::rollout {

enum class RolloutStatus {
  Live,        // the share of traffic on the candidate is served and judged
  Paused,      // the share stays, steps and guardrail actions wait (after a crash: the share is 0)
  RolledBack,  // every request on stable
  Promoted,    // the candidate variants answer as stable (stable_overrides)
  Completed,   // the last step reached 100 %
};
const char* to_string(RolloutStatus status);
std::optional<RolloutStatus> parse_status(std::string_view text);

struct Rollout {
  std::int64_t id = 0;
  std::string pipeline;
  std::map<std::string, std::string> variants;  // stage -> candidate variant
  int percent_bp = 0;
  int shadow_bp = 0;
  RolloutStatus status = RolloutStatus::Live;
  std::vector<double> steps;
  int step_index = -1;
  std::int64_t dwell_ms = 0, step_ms = 0, created_ms = 0, updated_ms = 0;
  std::string reason;
  int paused_percent_bp = 0;  // the share resume restores when a crash paused it at 0

  // Still steering traffic or holding a share: what rollback, pause and a new start act on.
  bool active() const;
  std::string salt() const { return pipeline + "#" + std::to_string(id); }
  nlohmann::json to_json() const;
};

struct RolloutEvent {
  std::int64_t rollout_id = 0;
  std::int64_t time_ms = 0;
  std::string actor;   // operator name, "guardrail", "schedule", "daemon"
  std::string action;  // start, set_percent, step, pause, resume, rollback, promote, complete, decision
  std::string reason;
  int percent_bp = 0;
  nlohmann::json details = nlohmann::json::object();  // the verdict behind a guardrail event
  nlohmann::json to_json() const;
};

// A replica sharing the database: its heartbeat row (migrations/004_replicas.sql).
struct ReplicaRow {
  std::string id, host;
  std::int64_t pid = 0, started_ms = 0, seen_ms = 0, plugin_generation = 0;
  bool deciding = false;
  std::int64_t complete_ms = 0;
};

}  // namespace pipelined::rollout

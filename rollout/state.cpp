#include "rollout/state.h"

namespace pipelined::rollout {

namespace {
constexpr std::pair<RolloutStatus, const char*> kStatusNames[] = {
    {RolloutStatus::Live, "live"},         {RolloutStatus::Paused, "paused"},       {RolloutStatus::RolledBack, "rolled_back"},
    {RolloutStatus::Promoted, "promoted"}, {RolloutStatus::Completed, "completed"},
};
}  // namespace

const char* to_string(RolloutStatus status) {
  for (const auto& [s, name] : kStatusNames)
    if (s == status) return name;
  return "live";
}

std::optional<RolloutStatus> parse_status(std::string_view text) {
  for (const auto& [s, name] : kStatusNames)
    if (text == name) return s;
  return std::nullopt;
}

bool Rollout::active() const {
  return status == RolloutStatus::Live || status == RolloutStatus::Paused || status == RolloutStatus::Completed;
}

nlohmann::json Rollout::to_json() const {
  return {{"id", id},
          {"pipeline", pipeline},
          {"variants", variants},
          {"percent", percent_bp / 100.0},
          {"shadow_percent", shadow_bp / 100.0},
          {"status", to_string(status)},
          {"steps", steps},
          {"step_index", step_index},
          {"dwell_ms", dwell_ms},
          {"step_started_ms", step_ms},
          {"created_ms", created_ms},
          {"updated_ms", updated_ms},
          {"reason", reason},
          {"resume_percent",
           status == RolloutStatus::Paused && paused_percent_bp > percent_bp ? paused_percent_bp / 100.0 : percent_bp / 100.0}};
}

nlohmann::json RolloutEvent::to_json() const {
  nlohmann::json j = {{"rollout_id", rollout_id}, {"time_ms", time_ms}, {"actor", actor},
                      {"action", action},         {"reason", reason},   {"percent", percent_bp / 100.0}};
  if (!details.empty()) j["details"] = details;
  return j;
}

}  // namespace pipelined::rollout

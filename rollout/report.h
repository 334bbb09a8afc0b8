// The report document pipectl shows: one rollout's figures per arm, the verdict of the same
// guardrails the schedule runs, and the decisions taken with their reasons. Pure: the controller
// reads the rows (store.h) and hands them in. The SQL for sqlite3 users is in docs/rollout.md.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rollout/guardrails.h"
#include "rollout/state.h"
#include "rollout/store.h"

namespace pipelined::rollout {

double quantile(std::vector<double> values, double q);  // linear interpolation; 0 for none

nlohmann::json verdict_json(const Verdict& verdict);

struct PipelineReportInput {
  std::string pipeline;
  std::optional<Rollout> rollout;  // none: the pipeline's rows served without a rollout
  Window window;
  std::map<std::string, ArmSamples> arms;
  ShadowOutcomes shadow;
  Verdict verdict;
  std::vector<RolloutEvent> events;  // of this rollout, newest first
};

nlohmann::json pipeline_report(const PipelineReportInput& in);

}  // namespace pipelined::rollout

// The rollout decision: from the outcomes of both arms, whether the candidate is rolled back, kept
// (its next step may come), the rollout paused, or more data is needed. Every criterion is a
// sequential test (rollout/sequential.h) whose error guarantee holds however often it is checked;
// the daemon's schedule and bench/decision_sim call this same function.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rollout/sequential.h"
#include "rollout/settings.h"

namespace pipelined::rollout {

// One arm's outcomes as the tests read them: O(1) per request, no sample kept.
struct ArmOutcomes {
  double requests = 0;
  double own_failures = 0;   // an attempt of the arm's own variants failed (rescued or not)
  double user_failures = 0;  // the user got an error
  double fallbacks = 0;
  sequential::Moments log_latency;                // log(latency ms)
  sequential::Moments log_peak;                   // log(1 + peak heap bytes)
  sequential::Moments peak;                       // peak heap bytes
  std::map<std::string, double> failure_classes;  // own failures by error class
  void add(double latency_ms, double peak_bytes, bool own_ok, bool user_ok, bool fell_back, const std::string& failure_class);
};

struct ShadowOutcomes {
  double compared = 0, mismatched = 0;
};

// Requests per arm since the share last changed, and that share: for the sample-ratio test.
struct SplitCounts {
  double stable = 0, candidate = 0;
  double share = 0;  // configured candidate share, 0..1
};

enum class CheckResult { Holds, Fails, Unsure };
const char* to_string(CheckResult r);

struct Check {
  std::string rule;  // time_saved, own_success, critical_success, failure_increase, memory, error_class:<c>, shadow_mismatch, sample_ratio
  std::string figure;                      // what was compared, in words
  double estimate = 0, low = 0, high = 0;  // in the rule's own unit (fractions)
  double threshold = 0;
  double alpha = 0;  // error budget this check spends
  CheckResult result = CheckResult::Unsure;
  bool needed_to_keep = false;  // "keep" waits until this one holds
  double more_samples = 0;      // per arm, estimated, while Unsure; 0 otherwise
  std::string text;             // one line for the operator
  // What estimate, low, high and threshold count: "fraction" (0.05 is 5 %), or "requests"
  // (critical_crashes: a number of requests).
  std::string unit = "fraction";
};

enum class Decision { Collecting, Keep, RollBack, Pause };
const char* to_string(Decision d);

struct Verdict {
  Decision decision = Decision::Collecting;
  double n_stable = 0, n_candidate = 0;
  std::vector<Check> checks;
  std::string reason;  // the checks that fired, or what is still needed
};

Verdict judge(const Criteria& criteria, const ArmOutcomes& stable, const ArmOutcomes& candidate, const ShadowOutcomes& shadow,
              const std::optional<SplitCounts>& split);

}  // namespace pipelined::rollout

// Figures per pipeline and arm, computed from the metrics rows: the report that pipectl shows and
// the samples the guardrails judge. The SQL is in docs/rollout.md for sqlite3 users.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/config/config.h"

namespace pipelined::rollout {

struct ArmSamples {
  std::vector<double> latency_ms;
  std::vector<double> peak_bytes;
  std::vector<double> rss_bytes;
  long requests = 0, ok = 0, partial = 0, errors = 0, fallbacks = 0;
  std::map<std::string, long> error_classes;
  std::map<std::string, std::vector<double>> stage_ms;  // stage -> durations
  double success_rate() const { return requests ? static_cast<double>(ok + partial) / requests : 0; }
};

struct ShadowSamples {
  long compared = 0, mismatched = 0;
  double mismatch_rate() const { return compared ? static_cast<double>(mismatched) / compared : 0; }
};

// Requests of `pipeline` since `since_ms` by arm ("stable", "candidate"); only rollout `rollout_id`
// when it is not 0.
std::map<std::string, ArmSamples> load_arms(SQLite::Database& db, const std::string& pipeline, std::int64_t since_ms,
                                            std::int64_t rollout_id, bool with_stages);
ShadowSamples load_shadow(SQLite::Database& db, const std::string& pipeline, std::int64_t since_ms, std::int64_t rollout_id);

double quantile(std::vector<double> values, double q);  // linear interpolation; 0 for none

// (stable - candidate) / stable of `stat` with a 95 % bootstrap interval (seeded: the same rows
// give the same interval).
struct Saving {
  double value = 0, low = 0, high = 0;
};
Saving time_saved(const std::vector<double>& stable, const std::vector<double>& candidate, double q, int resamples = 1000);

// Why the candidate must not stay (empty: it may), judged against the config's criteria.
// `enough` is false when an arm has fewer than min_samples_per_arm requests.
struct Verdict {
  bool enough = false;
  std::vector<std::string> failures;
  std::string text() const;
};
Verdict judge(const config::RolloutConfig& rules, const ArmSamples& stable, const ArmSamples& candidate, const ShadowSamples& shadow);

// The report document for pipectl: every pipeline (or one) since `since_ms`.
nlohmann::json build_report(SQLite::Database& db, const config::Config& config, std::int64_t since_ms, const std::string& pipeline);

}  // namespace pipelined::rollout

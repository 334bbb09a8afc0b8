// What the rollout controller needs to know, filled by its owner (the daemon from its config, a
// test or the decision simulator directly). rollout/ reads no config file of its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "rollout/compare.h"

namespace pipelined::rollout {

using Millis = std::chrono::milliseconds;

struct StageCatalog {
  std::string name;
  std::string stable;
  // The variant a rollout that names no stages switches this stage to; "" for none. The daemon
  // takes it from the stage's `candidate:` key, or the stage's only non-stable variant.
  std::string candidate;
  std::vector<std::string> variants;
  bool has_variant(const std::string& v) const;
};

struct PipelineCatalog {
  std::string name;
  std::vector<StageCatalog> stages;
  bool fallback_whole_request = false;
  const StageCatalog* stage(const std::string& stage_name) const;
};

// The team's rule, and the error budget the sequential tests may spend deciding it.
struct Criteria {
  double min_success_rate = 0.95;     // candidate's own success (no attempt failed)
  double min_time_saved = 0.10;       // candidate latency at least this much below stable
  double max_memory_increase = 0.20;  // candidate peak heap at most this much above stable
  // ... unless the increase is at most this many bytes per request: a relative criterion on a
  // small heap (1 MiB against 2.4 MiB) judges allocator detail, not what the machine must hold.
  double min_memory_increase_bytes = 4 << 20;
  double max_error_class_spike = 0.05;
  double max_shadow_mismatch = 0.01;
  double alpha = 0.05;  // total, split across the guardrails (guardrails.cpp)
  double srm_alpha = 0.001;
  double hard_min_success_rate = 0.80;  // critical: below this after hard_min_requests, at once
  int hard_min_requests = 20;
  // critical: this many candidate requests failed by a crash of the candidate's runner process
  // (error class "crashed", isolation: process) roll back at once, whatever their share.
  int max_crashed_requests = 3;
  int min_samples_per_arm = 30;  // the tests judge from this many per arm on
};

struct RolloutSettings {
  std::vector<PipelineCatalog> pipelines;
  Criteria criteria;
  bool allow_force_header = false;
  Millis guardrail_interval{10000};
  std::vector<double> steps;  // default steps of a rollout that names none; empty = manual
  Millis step_dwell{3600000};
  CompareRules shadow_rules;
  // A SQLite file (one daemon), or a postgresql:// URL that replicas share: then a change made on
  // any replica reaches every one, and one replica at a time (the lease holder) decides.
  std::string database = "var/pipelined.db";
  std::string replica_id = "local";  // this replica's row in `replicas`; unique per replica
  std::string replica_host;          // shown in status
  Millis replica_poll{1000};         // state re-read this often besides notifications; heartbeat period
  Millis replica_timeout{5000};      // a replica not seen for this long is not waited for
  int retention_days = 30;
  std::size_t queue_capacity = 100000;
  Millis flush_interval{200};

  const PipelineCatalog* pipeline(const std::string& name) const;
};

}  // namespace pipelined::rollout

// What the request path hands the rollout controller and gets back: the arm a request runs on,
// and the rows that describe how it went. Plain values, no behaviour.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace pipelined::rollout {

enum class Arm { Stable, Candidate };
const char* to_string(Arm arm);

struct Assignment {
  Arm arm = Arm::Stable;
  int bucket = -1;              // 0..9999 from the sticky key; -1 when no rollout is live
  std::int64_t rollout_id = 0;  // 0 when no rollout is live for the pipeline
  std::int64_t started_ms = 0;  // when assign() ran; record() must carry it back as time_ms
  // stage -> variant for this request; empty on the stable arm (engine runs stable variants).
  std::map<std::string, std::string> variants;
  bool fallback_whole_request = false;  // rerun the whole pipeline on stable if the candidate fails
  // Shadow: run these candidate variants beside stable, compare outputs, never affect the response.
  bool shadow = false;
  std::map<std::string, std::string> shadow_variants;
};

struct StageRunRecord {
  std::string stage;
  std::string variant;
  std::string plugin_version;
  std::int64_t start_us = 0;  // microseconds since the request started
  std::int64_t duration_us = 0;
  std::string status;  // "ok", "failed", "skipped", "fell_back"
  int attempts = 1;
  std::string error_class;
  std::int64_t peak_bytes = 0;
};

struct RequestRecord {
  std::int64_t time_ms = 0;  // Assignment::started_ms: unix epoch milliseconds at request start
  std::string request_id;
  std::string pipeline;
  std::int64_t rollout_id = 0;
  Arm arm = Arm::Stable;
  int bucket = -1;
  int http_status = 200;
  std::string outcome;  // what the user got: "ok", "partial", "error"
  std::int64_t latency_us = 0;
  bool fell_back = false;
  std::string fallback_cause;
  std::string error_class;
  // The arm's own outcome: an attempt of this arm's variants failed, timed out, crashed or was
  // abandoned, even when a fallback rescued the user's answer. "<stage>: <class>" or "".
  std::string own_failure;
  std::int64_t peak_bytes = 0;
  std::int64_t rss_bytes = 0;
  std::vector<StageRunRecord> stages;
};

struct ShadowRecord {
  std::int64_t time_ms = 0;
  std::string request_id;
  std::string pipeline;
  std::int64_t rollout_id = 0;
  bool candidate_ok = false;     // the shadow run produced output
  bool matched = false;          // outputs equal under the configured comparison
  std::string first_difference;  // JSON pointer of the first mismatch, for the report
  std::int64_t stable_latency_us = 0;
  std::int64_t candidate_latency_us = 0;
};

}  // namespace pipelined::rollout

// Rollout controller: which arm (stable or candidate variants) a request runs on, what it cost,
// and when a candidate must be rolled back. The request path touches only assign() and record();
// both read an immutable RolloutState snapshot and never wait on disk.
#pragma once

#include "daemon/config/config.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipelined::rollout {

enum class Arm { Stable, Candidate };
const char* to_string(Arm arm);

struct Assignment {
  Arm arm = Arm::Stable;
  int bucket = -1;               // 0..9999 from the sticky key; -1 when no rollout is live
  std::int64_t rollout_id = 0;   // 0 when no rollout is live for the pipeline
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
  std::int64_t time_ms = 0;  // unix epoch milliseconds at request start
  std::string request_id;
  std::string pipeline;
  std::int64_t rollout_id = 0;
  Arm arm = Arm::Stable;
  int bucket = -1;
  int http_status = 200;
  std::string outcome;  // "ok", "partial", "error"
  std::int64_t latency_us = 0;
  bool fell_back = false;
  std::string fallback_cause;
  std::string error_class;
  std::int64_t peak_bytes = 0;
  std::int64_t rss_bytes = 0;
  std::vector<StageRunRecord> stages;
};

struct ShadowRecord {
  std::int64_t time_ms = 0;
  std::string request_id;
  std::string pipeline;
  std::int64_t rollout_id = 0;
  bool candidate_ok = false;  // the shadow run produced output
  bool matched = false;       // outputs equal under the configured comparison
  std::string first_difference;  // JSON pointer of the first mismatch, for the report
  std::int64_t stable_latency_us = 0;
  std::int64_t candidate_latency_us = 0;
};

// Answer of the admin API: an HTTP status and a JSON body.
struct AdminResponse {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
};

class RolloutController {
 public:
  // Opens (creating and migrating) the metrics database named in config.metrics and loads the
  // persisted rollout state. Throws std::runtime_error with an actionable message when the database
  // is newer than this binary or cannot be opened at all.
  explicit RolloutController(std::shared_ptr<const config::Config> config);
  ~RolloutController();  // stop()

  // Starts the writer thread and the guardrail schedule.
  void start();
  // Writes every queued row, stops the threads, marks the stop clean. Idempotent.
  void stop();
  // A reloaded config: thresholds, sticky key, retention.
  void update_config(std::shared_ptr<const config::Config> config);

  // Arm for one request. `sticky_key` empty: assigned per request. `forced` is the value of the
  // force header, honoured only when the config allows it.
  Assignment assign(const std::string& pipeline, const std::string& sticky_key,
                    std::optional<Arm> forced = std::nullopt) const;

  // Queues the row for the writer thread; never blocks on disk. Rows that cannot be queued or
  // written are counted as lost.
  void record(RequestRecord record);
  void record_shadow(ShadowRecord record);

  // Compares a stable and a shadow response body under the configured rules (ignored fields, array
  // order). Returns "" when they match, else the JSON pointer of the first difference.
  std::string compare_outputs(const nlohmann::json& stable, const nlohmann::json& candidate) const;

  // The admin API under /admin/rollout, /admin/report: `target` is the path with its query string.
  // Routes, bodies and statuses: docs/rollout.md.
  AdminResponse handle_admin(const std::string& method, const std::string& target, const std::string& body);

  // One guardrail and step-schedule pass now (the schedule runs it every guardrail_interval).
  void evaluate_guardrails_now();
  // Waits until every row recorded so far is written or counted lost.
  void flush();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::rollout

// Rollout controller: which arm (stable or candidate variants) a request runs on, what it cost,
// and when a candidate must be rolled back. The request path touches only assign() and record();
// both read an immutable RolloutState snapshot and never wait on disk.
#pragma once

#include "daemon/config/config.h"

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

class RolloutController {
 public:
  explicit RolloutController(std::shared_ptr<const config::Config> config);
  ~RolloutController();

  // Arm for one request. `sticky_key` empty: assigned per request. `forced` is the value of the
  // force header, honoured only when the config allows it.
  Assignment assign(const std::string& pipeline, const std::string& sticky_key,
                    std::optional<Arm> forced = std::nullopt) const;

  // Queues the row for the writer thread; never blocks on disk. Rows that cannot be queued or
  // written are counted as lost.
  void record(RequestRecord record);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::rollout

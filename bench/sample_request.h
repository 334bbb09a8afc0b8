// The request row the rollout benches write: a two-stage request on alternating arms, its fields
// varied by `i` the way real rows vary (ids, buckets, latencies).
#pragma once

#include <string>

#include "rollout/records.h"
#include "rollout/store.h"

namespace pipelined::bench {

inline rollout::RequestRecord sample_request(int i) {
  rollout::RequestRecord r;
  r.time_ms = rollout::now_ms();
  r.request_id = "bench-" + std::to_string(i);
  r.pipeline = "p";
  r.arm = i % 2 ? rollout::Arm::Candidate : rollout::Arm::Stable;
  r.bucket = i % 10000;
  r.outcome = "ok";
  r.latency_us = 1000 + i % 500;
  r.peak_bytes = 4096;
  r.rss_bytes = 1 << 26;
  r.stages = {{"a", "serial", "1.0.0", 0, 400, "ok", 1, "", 2048}, {"b", "serial", "1.0.0", 400, 500, "ok", 1, "", 2048}};
  return r;
}

}  // namespace pipelined::bench

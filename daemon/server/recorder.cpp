#include "daemon/server/recorder.h"

#include "daemon/memory/memory_account.h"

namespace pipelined::server {

std::string own_failure(const engine::RunResult& r) {
  for (const auto& s : r.stages) {
    // FellBack: the requested (non-stable) variant failed and stable answered. Failed: the variant
    // that ran failed with no fallback. Skipped stages did not run.
    if (s.status == engine::StageStatus::FellBack || s.status == engine::StageStatus::Failed)
      return s.stage + ": " + (s.error_class.empty() ? "internal" : s.error_class);
  }
  if (!r.ok && !r.partial) return "request: " + (r.error_class.empty() ? std::string("internal") : r.error_class);
  return "";
}

rollout::RequestRecord request_record(const FinishedRequest& x, const engine::RunResult& r) {
  rollout::RequestRecord rec;
  const rollout::Assignment& a = *x.assignment;
  rec.time_ms = a.started_ms;
  rec.request_id = x.request_id;
  rec.pipeline = x.pipeline;
  rec.rollout_id = a.rollout_id;
  rec.arm = a.arm;
  rec.bucket = a.bucket;
  rec.http_status = x.http_status;
  rec.outcome = r.ok ? "ok" : r.partial ? "partial" : "error";
  rec.latency_us = x.elapsed.count();
  rec.fell_back = r.fell_back || x.whole_request_fallback;
  rec.error_class = r.error_class;
  rec.own_failure = x.whole_request_fallback ? x.whole_request_failure : own_failure(r);
  if (x.whole_request_fallback) rec.fallback_cause = x.whole_request_failure;
  rec.peak_bytes = r.peak_bytes;
  rec.rss_bytes = memory::process_rss_bytes();
  for (const auto& s : r.stages) {
    if (rec.fallback_cause.empty() && s.status == engine::StageStatus::FellBack) rec.fallback_cause = s.stage + ": " + s.error_class;
    rec.stages.push_back({s.stage, s.variant, s.plugin_version,
                          std::chrono::duration_cast<std::chrono::microseconds>(s.started - x.started).count(), s.duration.count(),
                          engine::to_string(s.status), s.attempts, s.error_class, s.peak_bytes});
  }
  return rec;
}

}  // namespace pipelined::server

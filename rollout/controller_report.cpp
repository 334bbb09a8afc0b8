// The report of one rollout per pipeline: rows from the store, the verdict of the same judge()
// the schedule runs, and the rollout's events.
#include <algorithm>

#include "rollout/controller_impl.h"
#include "rollout/report.h"

namespace pipelined::rollout {

Result<json> RolloutController::Impl::report(const ReportQuery& q) {
  const auto settings = cfg();
  if (!q.pipeline.empty() && settings->pipeline(q.pipeline) == nullptr)
    return Error{Error::Kind::NotFound, "unknown pipeline '" + q.pipeline + "'"};
  writer->flush();
  const std::int64_t now = now_ms();
  std::optional<Rollout> chosen;
  if (q.rollout_id != 0) {
    chosen = store->rollout(q.rollout_id);
    if (!chosen) return Error{Error::Kind::NotFound, "no rollout " + std::to_string(q.rollout_id)};
    if (!q.pipeline.empty() && chosen->pipeline != q.pipeline)
      return Error{Error::Kind::Invalid, "rollout " + std::to_string(q.rollout_id) + " belongs to pipeline '" + chosen->pipeline + "'"};
  }
  json pipelines = json::object();
  const auto s = snapshot();
  for (const auto& p : settings->pipelines) {
    if (chosen && chosen->pipeline != p.name) continue;
    if (!q.pipeline.empty() && p.name != q.pipeline) continue;
    PipelineReportInput in;
    in.pipeline = p.name;
    in.rollout = chosen;
    if (!chosen)
      if (auto it = s->latest.find(p.name); it != s->latest.end()) in.rollout = it->second;
    const std::int64_t since = now - q.since.count();
    in.window = {in.rollout ? in.rollout->id : 0, in.rollout ? std::max(since, in.rollout->created_ms) : since,
                 complete_until(p.name, now)};
    in.arms = store->arms(p.name, in.window, true);
    in.shadow = store->shadow(p.name, in.window);
    const ArmSamples none;
    auto arm = [&](const char* name) -> const ArmOutcomes& {
      const auto it = in.arms.find(name);
      return (it == in.arms.end() ? none : it->second).outcomes;
    };
    in.verdict = judge(settings->criteria, arm("stable"), arm("candidate"), in.shadow, std::nullopt);
    if (in.rollout) in.events = store->events(in.rollout->id, 50);
    pipelines[p.name] = pipeline_report(in);
  }
  const WriterCounters w = writer->counters();
  const Criteria& c = settings->criteria;
  return json{{"since_ms", now - q.since.count()},
              {"pipelines", pipelines},
              {"rows_lost", w.lost()},
              {"rows_written", w.written},
              {"criteria",
               {{"min_success_rate", c.min_success_rate},
                {"min_time_saved", c.min_time_saved},
                {"max_memory_increase", c.max_memory_increase},
                {"min_memory_increase_bytes", c.min_memory_increase_bytes},
                {"max_error_class_spike", c.max_error_class_spike},
                {"max_shadow_mismatch", c.max_shadow_mismatch},
                {"alpha", c.alpha},
                {"srm_alpha", c.srm_alpha},
                {"hard_min_success_rate", c.hard_min_success_rate},
                {"hard_min_requests", c.hard_min_requests},
                {"min_samples_per_arm", c.min_samples_per_arm}}}};
}

}  // namespace pipelined::rollout

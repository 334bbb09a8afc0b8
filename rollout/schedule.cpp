// The guardrail schedule: every guardrail_interval, judge each live rollout on complete data and
// act on the verdict (roll back, pause, record the decision, take the next step); retention; and
// the crash-loop guard at start.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "common/percent.h"
#include "rollout/assignment.h"
#include "rollout/controller_impl.h"
#include "rollout/report.h"

namespace pipelined::rollout {

void RolloutController::Impl::guard_against_crash_loop(const std::string& crash_note) {
  bool unclean = false;
  try {
    unclean = store->last_run_unclean(cfg()->replica_id);
    daemon_run_id = store->begin_run(cfg()->replica_id);
  } catch (const std::exception& e) {
    spdlog::error("rollout: cannot record the daemon run: {}", e.what());
  }
  if (!unclean) return;
  const auto held = snapshot();  // held: changes below publish newer states
  for (const auto& [pipeline, r] : held->latest) {
    if (!r.active() || (r.percent_bp == 0 && r.shadow_bp == 0)) continue;
    Rollout next = r;
    next.status = RolloutStatus::Paused;
    next.paused_percent_bp = std::max(r.percent_bp, r.paused_percent_bp);
    next.percent_bp = next.shadow_bp = 0;
    std::lock_guard serial(change_mu);
    change(next, "daemon", "pause",
           std::string("the previous daemon run ended without a clean stop") + (crash_note.empty() ? "" : " (" + crash_note + ")") +
               " while this rollout held " + common::format_percent(r.percent_bp / 10000.0, 2) +
               "; the candidate gets no traffic until `pipectl resume`");
  }
}

void RolloutController::Impl::schedule() {
  auto last_retention = std::chrono::steady_clock::now();
  std::unique_lock lock(scheduler_mu);
  while (!stopping) {
    scheduler_wake.wait_for(lock, cfg()->guardrail_interval, [this] { return stopping; });
    if (stopping) break;
    lock.unlock();
    if (deciding) {
      evaluate();  // with replicas, the lease holder alone: one decision per event, not one per replica
    } else {
      judge_live();
      std::lock_guard verdict_lock(verdict_mu);
      last_decision.clear();  // another replica records decisions now; on taking the lease, read them back
    }
    if (deciding && std::chrono::steady_clock::now() - last_retention > std::chrono::hours(1)) {
      retention();
      last_retention = std::chrono::steady_clock::now();
    }
    lock.lock();
  }
}

void RolloutController::Impl::retention() {
  try {
    store->delete_before(now_ms() - static_cast<std::int64_t>(cfg()->retention_days) * 86'400'000);
  } catch (const std::exception& e) {
    spdlog::warn("rollout: retention pass failed: {}", e.what());
  }
}

std::int64_t RolloutController::Impl::complete_until(const std::string& pipeline, std::int64_t now) const {
  std::lock_guard lock(running_mu);
  auto it = running.find(pipeline);
  return it == running.end() || it->second.empty() ? now + 1 : *it->second.begin();
}

Verdict RolloutController::Impl::verdict_for(const Rollout& r, std::int64_t until) {
  const auto settings = cfg();
  const Window whole{r.id, r.created_ms, until};
  auto arms = store->arms(r.pipeline, whole, false);
  const ShadowOutcomes shadow = store->shadow(r.pipeline, whole);
  std::optional<SplitCounts> split;
  if (r.status == RolloutStatus::Live && r.percent_bp > 0 && r.percent_bp < kBuckets) {
    auto since_step = store->arm_counts(r.pipeline, {r.id, r.step_ms, until});
    split = SplitCounts{since_step["stable"], since_step["candidate"], r.percent_bp / 10000.0};
  }
  return judge(settings->criteria, arms["stable"].outcomes, arms["candidate"].outcomes, shadow, split);
}

std::vector<std::pair<Rollout, Verdict>> RolloutController::Impl::judge_live() {
  const std::int64_t now = now_ms();
  std::map<std::string, std::int64_t> until;
  const auto held = snapshot();  // held: changes below publish newer states
  // Requests still running on another replica, or recorded there and not yet written, started
  // after the time its last heartbeat gave.
  const std::int64_t others = others_complete(now);
  for (const auto& [pipeline, r] : held->latest) until[pipeline] = std::min(complete_until(pipeline, now), others);
  writer->flush();  // every request that started before `until` has been recorded: now it is written
  std::vector<std::pair<Rollout, Verdict>> judged;
  for (const auto& [pipeline, r] : snapshot()->latest) {
    if (r.status != RolloutStatus::Live) continue;
    try {
      judged.emplace_back(r, verdict_for(r, until[pipeline]));
    } catch (const std::exception& e) {
      spdlog::warn("rollout: guardrails skipped for {}: {}", pipeline, e.what());
      continue;
    }
    std::lock_guard lock(verdict_mu);
    verdicts[pipeline] = judged.back().second;
  }
  return judged;
}

std::string RolloutController::Impl::recorded_decision(std::int64_t id) {
  {
    std::lock_guard lock(verdict_mu);
    if (auto it = last_decision.find(id); it != last_decision.end()) return it->second;
  }
  // The newest event that carries a verdict: a decision, or the step a "keep" took.
  try {
    for (const auto& e : store->events(id, 50))
      if (e.details.is_object() && e.details.contains("decision") && e.details["decision"].is_string())
        return e.details["decision"].get<std::string>();
  } catch (const std::exception& e) {
    spdlog::warn("rollout: could not read the decisions of rollout {}: {}", id, e.what());
  }
  return to_string(Decision::Collecting);  // no verdict recorded yet: collecting goes unrecorded
}

void RolloutController::Impl::evaluate() {
  const std::int64_t now = now_ms();
  for (const auto& [r, v] : judge_live()) {
    const std::string& pipeline = r.pipeline;
    const json details = verdict_json(v);
    const std::string previous = recorded_decision(r.id);
    {
      std::lock_guard lock(verdict_mu);
      last_decision[r.id] = to_string(v.decision);
    }
    if (v.decision == Decision::RollBack) {
      spdlog::warn("rollout {} ({}): guardrail tripped: {}", r.id, pipeline, v.reason);
      rollback({pipeline, "guardrail", "roll back: " + v.reason}, details);
      continue;
    }
    if (v.decision == Decision::Pause) {
      spdlog::warn("rollout {} ({}): paused: {}", r.id, pipeline, v.reason);
      set_status({pipeline, "guardrail", v.reason}, "pause", details);
      continue;
    }
    if (to_string(v.decision) != previous) record_decision(r, v, details);
    if (v.decision != Decision::Keep) continue;
    // The next step after the dwell, only when every criterion confidently holds.
    if (r.steps.empty() || r.step_index + 1 >= static_cast<int>(r.steps.size()) || now - r.step_ms < r.dwell_ms) continue;
    std::lock_guard serial(change_mu);
    Rollout next = r;
    ++next.step_index;
    next.percent_bp = percent_to_bp(r.steps[static_cast<std::size_t>(next.step_index)]);
    next.step_ms = now;
    if (next.percent_bp >= kBuckets) next.status = RolloutStatus::Completed;
    change(next, "schedule", next.status == RolloutStatus::Completed ? "complete" : "step", v.reason, details);
  }
}

void RolloutController::Impl::record_decision(const Rollout& r, const Verdict& v, const json& details) {
  Rollout same = r;
  try {
    store->save(same,
                {r.id, now_ms(), "guardrail", "decision", std::string(to_string(v.decision)) + ": " + v.reason, r.percent_bp, details});
  } catch (const std::exception& e) {
    spdlog::warn("rollout: could not record the decision for rollout {}: {}", r.id, e.what());
  }
}

}  // namespace pipelined::rollout

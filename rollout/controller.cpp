// RolloutController: operator actions, the guardrail schedule, and the crash-loop guard. The state
// assign() reads is an immutable snapshot replaced whole on every change (copy on write).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "rollout/assignment.h"
#include "rollout/compare.h"
#include "rollout/report.h"
#include "rollout/rollout.h"
#include "rollout/store.h"

namespace pipelined::rollout {

using nlohmann::json;

const char* to_string(Arm arm) { return arm == Arm::Candidate ? "candidate" : "stable"; }

bool StageCatalog::has_variant(const std::string& v) const { return std::find(variants.begin(), variants.end(), v) != variants.end(); }

const StageCatalog* PipelineCatalog::stage(const std::string& stage_name) const {
  for (const auto& s : stages)
    if (s.name == stage_name) return &s;
  return nullptr;
}

const PipelineCatalog* RolloutSettings::pipeline(const std::string& name) const {
  for (const auto& p : pipelines)
    if (p.name == name) return &p;
  return nullptr;
}

json Status::to_json() const {
  json out = json::object();
  for (const auto& [name, p] : pipelines) {
    out[name] = {{"rollout", p.rollout ? p.rollout->to_json() : json(nullptr)}, {"stable_overrides", p.stable_overrides}};
    if (p.verdict) out[name]["decision"] = verdict_json(*p.verdict);
  }
  json events = json::array();
  for (const auto& e : recent_events) events.push_back(e.to_json());
  return {{"pipelines", out},
          {"recent_events", events},
          {"metrics", {{"written", metrics.written}, {"queued", metrics.queued}, {"lost", metrics.lost()},
                       {"lost_by_cause", {{"queue_full", metrics.lost_queue_full}, {"locked", metrics.lost_locked},
                                          {"disk_full", metrics.lost_disk_full}, {"unavailable", metrics.lost_unavailable}}}}}};
}

namespace {

struct RolloutState {
  std::map<std::string, Rollout> latest;  // pipeline -> its most recent rollout
  std::map<std::string, std::map<std::string, std::string>> stable_overrides;
};

Error invalid(std::string m) { return {Error::Kind::Invalid, std::move(m)}; }
Error conflict(std::string m) { return {Error::Kind::Conflict, std::move(m)}; }

}  // namespace

struct RolloutController::Impl {
  mutable std::mutex settings_mu;
  std::shared_ptr<const RolloutSettings> settings;
  mutable std::mutex state_mu;
  std::shared_ptr<const RolloutState> state = std::make_shared<RolloutState>();
  std::mutex change_mu;  // one operator or guardrail change at a time

  std::unique_ptr<MetricsStore> store;
  std::unique_ptr<RowWriter> writer;

  // Start times of the requests assigned on a live rollout that have not been recorded yet: the
  // guardrails judge only requests that started before the oldest of them, so a slow arm's slow
  // requests are never missing from the comparison (no survivorship bias).
  mutable std::mutex running_mu;
  mutable std::map<std::string, std::multiset<std::int64_t>> running;

  mutable std::mutex verdict_mu;
  std::map<std::string, Verdict> verdicts;  // pipeline -> last guardrail pass
  std::map<std::int64_t, Decision> last_decision;

  std::mutex scheduler_mu;
  std::condition_variable scheduler_wake;
  bool stopping = false, started = false, stopped = false;
  std::thread scheduler;
  std::int64_t daemon_run_id = 0;

  std::shared_ptr<const RolloutSettings> cfg() const {
    std::lock_guard lock(settings_mu);
    return settings;
  }
  std::shared_ptr<const RolloutState> snapshot() const {
    std::lock_guard lock(state_mu);
    return state;
  }

  void load_state() {
    auto s = std::make_shared<RolloutState>();
    for (auto& r : store->latest_rollouts()) s->latest[r.pipeline] = r;
    s->stable_overrides = store->stable_overrides();
    std::lock_guard lock(state_mu);
    state = s;
  }

  // Publishes the new rollout, then persists it with its event. A new rollout (id 0) is persisted
  // first, since its id is its salt. A rollback takes effect even when the database fails.
  Result<Changed> change(Rollout r, const std::string& actor, const std::string& action, const std::string& reason,
                         json details = json::object()) {
    r.updated_ms = now_ms();
    r.reason = reason;
    RolloutEvent event{0, r.updated_ms, actor, action, reason, r.percent_bp, std::move(details)};
    bool persisted = true;
    auto persist = [&] {
      try {
        store->save(r, event);
      } catch (const std::exception& e) {
        spdlog::error("rollout: could not persist {} of rollout {} ({}): {}", action, r.id, r.pipeline, e.what());
        persisted = false;
      }
    };
    if (r.id == 0) {
      persist();
      if (r.id == 0) return Error{Error::Kind::Unavailable, "metrics database unavailable: the rollout could not be created"};
    }
    {
      std::lock_guard lock(state_mu);
      auto next = std::make_shared<RolloutState>(*state);
      next->latest[r.pipeline] = r;
      state = next;
    }
    if (action != "start") persist();
    spdlog::info("rollout {} ({}): {} by {} at {:.2f} %{}{}", r.id, r.pipeline, action, actor, r.percent_bp / 100.0,
                 reason.empty() ? "" : ": ", reason);
    return Changed{{r}, persisted};
  }

  // The pipeline an action without one means: the only active rollout, else the only pipeline.
  Result<std::string> pick_pipeline(const std::string& named) const {
    if (!named.empty()) {
      if (cfg()->pipeline(named) == nullptr) return Error{Error::Kind::NotFound, "unknown pipeline '" + named + "'"};
      return named;
    }
    std::vector<std::string> active;
    const auto held = snapshot();  // held: changes below publish newer states
    for (const auto& [p, r] : held->latest)
      if (r.active()) active.push_back(p);
    if (active.size() == 1) return active[0];
    if (active.size() > 1) return invalid("several rollouts are active: name the pipeline");
    if (cfg()->pipelines.size() == 1) return cfg()->pipelines[0].name;
    std::string names;
    for (const auto& p : cfg()->pipelines) names += (names.empty() ? "" : ", ") + p.name;
    return invalid("name the pipeline: one of " + names);
  }

  Result<Changed> start_or_update(const RolloutChange& c) {
    std::lock_guard serial(change_mu);
    const auto settings = cfg();
    auto picked = pick_pipeline(c.pipeline);
    if (auto* e = std::get_if<Error>(&picked)) return *e;
    const std::string pipeline = std::get<std::string>(picked);
    const PipelineCatalog* p = settings->pipeline(pipeline);
    if (c.percent < 0 || c.percent > 100) return invalid("'percent' must be between 0 and 100");
    if (c.shadow_percent < 0 || c.shadow_percent > 100) return invalid("'shadow_percent' must be between 0 and 100");
    std::map<std::string, std::string> variants;
    for (const auto& [stage, variant] : c.stages) {
      const StageCatalog* sc = p->stage(stage);
      if (sc == nullptr) return invalid("pipeline '" + pipeline + "' has no stage '" + stage + "'");
      if (!sc->has_variant(variant)) return invalid("stage '" + stage + "' has no variant '" + variant + "'");
      variants[stage] = variant;
    }
    if (c.stages.empty())
      for (const auto& sc : p->stages)
        if (!sc.candidate.empty()) variants[sc.name] = sc.candidate;
    if (variants.empty())
      return invalid("pipeline '" + pipeline + "' has no candidate variant: name stages and variants, or set 'candidate:' on its stages");
    const std::vector<double> steps = c.steps.value_or(settings->steps);
    for (std::size_t i = 0; i < steps.size(); ++i)
      if (steps[i] <= 0 || steps[i] > 100 || (i > 0 && steps[i] <= steps[i - 1])) return invalid("'steps' must be increasing percents in (0, 100]");

    const auto s = snapshot();
    auto current = s->latest.find(pipeline);
    Rollout r;
    std::string action = "start";
    if (current != s->latest.end() && current->second.active() && current->second.variants == variants) {
      r = current->second;  // same candidate: move the share, keep the salt (users keep their buckets)
      action = "set_percent";
      r.status = RolloutStatus::Live;
      r.paused_percent_bp = 0;
    } else {
      r.pipeline = pipeline;
      r.variants = variants;
      r.created_ms = now_ms();
    }
    r.percent_bp = percent_to_bp(c.percent);
    r.shadow_bp = percent_to_bp(c.shadow_percent);
    r.steps = steps;
    r.dwell_ms = c.dwell.value_or(settings->step_dwell).count();
    r.step_index = -1;
    for (std::size_t i = 0; i < steps.size(); ++i)
      if (percent_to_bp(steps[i]) <= r.percent_bp) r.step_index = static_cast<int>(i);
    r.step_ms = now_ms();
    if (r.percent_bp >= kBuckets && r.shadow_bp == 0) r.status = RolloutStatus::Completed;
    return change(r, c.actor, action, c.reason);
  }

  Result<Changed> rollback(const Target& t, json details = json::object()) {
    std::lock_guard serial(change_mu);
    if (!t.pipeline.empty() && cfg()->pipeline(t.pipeline) == nullptr)
      return Error{Error::Kind::NotFound, "unknown pipeline '" + t.pipeline + "'"};
    Changed done;
    const auto held = snapshot();  // held: changes below publish newer states
    for (const auto& [p, r] : held->latest) {
      if ((!t.pipeline.empty() && p != t.pipeline) || !r.active()) continue;
      Rollout next = r;
      next.status = RolloutStatus::RolledBack;
      next.percent_bp = next.shadow_bp = next.paused_percent_bp = 0;
      auto res = change(next, t.actor, "rollback", t.reason.empty() ? "rolled back by " + t.actor : t.reason, details);
      if (auto* c = std::get_if<Changed>(&res)) {
        done.rollouts.push_back(c->rollouts.front());
        done.persisted = done.persisted && c->persisted;
      }
    }
    if (done.rollouts.empty())
      return conflict(t.pipeline.empty() ? "no rollout is live" : "no rollout is live for pipeline '" + t.pipeline + "'");
    return done;
  }

  Result<Changed> set_status(const Target& t, const std::string& action, json details = json::object()) {
    std::lock_guard serial(change_mu);
    auto picked = pick_pipeline(t.pipeline);
    if (auto* e = std::get_if<Error>(&picked)) return *e;
    const std::string pipeline = std::get<std::string>(picked);
    const auto s = snapshot();
    auto it = s->latest.find(pipeline);
    if (it == s->latest.end() || !it->second.active()) return conflict("no rollout is live for pipeline '" + pipeline + "'");
    Rollout r = it->second;
    if (action == "pause") {
      if (r.status == RolloutStatus::Paused) return conflict("the rollout is already paused");
      r.status = RolloutStatus::Paused;
    } else if (action == "resume") {
      if (r.status != RolloutStatus::Paused) return conflict("the rollout is not paused");
      r.status = RolloutStatus::Live;
      if (r.paused_percent_bp > r.percent_bp) r.percent_bp = r.paused_percent_bp;  // after a crash pause
      r.paused_percent_bp = 0;
      r.step_ms = now_ms();
    } else {  // promote
      r.status = RolloutStatus::Promoted;
      r.percent_bp = r.shadow_bp = r.paused_percent_bp = 0;
      {
        std::lock_guard lock(state_mu);
        auto next = std::make_shared<RolloutState>(*state);
        for (const auto& [stage, variant] : r.variants) next->stable_overrides[pipeline][stage] = variant;
        state = next;
      }
      try {
        store->save_overrides(pipeline, r.variants);
      } catch (const std::exception& e) {
        spdlog::error("rollout: could not persist the promotion of {}: {}", pipeline, e.what());
      }
    }
    return change(r, t.actor, action, t.reason, std::move(details));
  }

  // After an unclean stop: a candidate that may have crashed the process gets no traffic until an
  // operator resumes it; resume restores the share it had.
  void guard_against_crash_loop(const std::string& crash_note) {
    bool unclean = false;
    try {
      unclean = store->last_run_unclean();
      daemon_run_id = store->begin_run();
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
      char share[32];
      std::snprintf(share, sizeof share, "%.2f", r.percent_bp / 100.0);
      change(next, "daemon", "pause",
             std::string("the previous daemon run ended without a clean stop") + (crash_note.empty() ? "" : " (" + crash_note + ")") +
                 " while this rollout held " + share + " %; the candidate gets no traffic until `pipectl resume`");
    }
  }

  void schedule() {
    auto last_retention = std::chrono::steady_clock::now();
    std::unique_lock lock(scheduler_mu);
    while (!stopping) {
      scheduler_wake.wait_for(lock, cfg()->guardrail_interval, [this] { return stopping; });
      if (stopping) break;
      lock.unlock();
      evaluate();
      if (std::chrono::steady_clock::now() - last_retention > std::chrono::hours(1)) {
        retention();
        last_retention = std::chrono::steady_clock::now();
      }
      lock.lock();
    }
  }

  void retention() {
    try {
      store->delete_before(now_ms() - static_cast<std::int64_t>(cfg()->retention_days) * 86'400'000);
    } catch (const std::exception& e) {
      spdlog::warn("rollout: retention pass failed: {}", e.what());
    }
  }

  // The first start time still running for `pipeline`, or now.
  std::int64_t complete_until(const std::string& pipeline, std::int64_t now) const {
    std::lock_guard lock(running_mu);
    auto it = running.find(pipeline);
    return it == running.end() || it->second.empty() ? now + 1 : *it->second.begin();
  }

  Verdict verdict_for(const Rollout& r, std::int64_t until) {
    const auto settings = cfg();
    const Window whole{r.id, r.created_ms, until};
    auto arms = store->arms(r.pipeline, whole, false);
    const ShadowOutcomes shadow = store->shadow(r.pipeline, whole);
    std::optional<SplitCounts> split;
    if (r.status == RolloutStatus::Live && r.percent_bp > 0 && r.percent_bp < kBuckets) {
      auto since_step = store->arms(r.pipeline, {r.id, r.step_ms, until}, false);
      split = SplitCounts{since_step["stable"].outcomes.requests, since_step["candidate"].outcomes.requests, r.percent_bp / 10000.0};
    }
    return judge(settings->criteria, arms["stable"].outcomes, arms["candidate"].outcomes, shadow, split);
  }

  void evaluate() {
    const std::int64_t now = now_ms();
    std::map<std::string, std::int64_t> until;
    const auto held = snapshot();  // held: changes below publish newer states
    for (const auto& [pipeline, r] : held->latest) until[pipeline] = complete_until(pipeline, now);
    writer->flush();  // every request that started before `until` has been recorded: now it is written
    const auto current = snapshot();
    for (const auto& [pipeline, r] : current->latest) {
      if (r.status != RolloutStatus::Live) continue;
      Verdict v;
      try {
        v = verdict_for(r, until[pipeline]);
      } catch (const std::exception& e) {
        spdlog::warn("rollout: guardrails skipped for {}: {}", pipeline, e.what());
        continue;
      }
      const json details = verdict_json(v);
      Decision previous = Decision::Collecting;
      {
        std::lock_guard lock(verdict_mu);
        verdicts[pipeline] = v;
        auto [it, fresh] = last_decision.try_emplace(r.id, Decision::Collecting);
        previous = it->second;
        it->second = v.decision;
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
      if (v.decision != previous) record_decision(r, v, details);
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

  // A verdict that changed without changing the rollout (collecting <-> keep) is an event too.
  void record_decision(const Rollout& r, const Verdict& v, const json& details) {
    Rollout same = r;
    try {
      store->save(same, {r.id, now_ms(), "guardrail", "decision", std::string(to_string(v.decision)) + ": " + v.reason, r.percent_bp, details});
    } catch (const std::exception& e) {
      spdlog::warn("rollout: could not record the decision for rollout {}: {}", r.id, e.what());
    }
  }

  Result<json> report(const ReportQuery& q) {
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
        return invalid("rollout " + std::to_string(q.rollout_id) + " belongs to pipeline '" + chosen->pipeline + "'");
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
                {"criteria", {{"min_success_rate", c.min_success_rate}, {"min_time_saved", c.min_time_saved},
                              {"max_memory_increase", c.max_memory_increase}, {"max_error_class_spike", c.max_error_class_spike},
                              {"max_shadow_mismatch", c.max_shadow_mismatch}, {"alpha", c.alpha}, {"srm_alpha", c.srm_alpha},
                              {"hard_min_success_rate", c.hard_min_success_rate}, {"hard_min_requests", c.hard_min_requests},
                              {"min_samples_per_arm", c.min_samples_per_arm}}}};
  }
};

RolloutController::RolloutController(RolloutSettings settings) : impl_(std::make_unique<Impl>()) {
  impl_->settings = std::make_shared<const RolloutSettings>(std::move(settings));
  const auto& s = *impl_->settings;
  impl_->store = std::make_unique<MetricsStore>(s.database_path);
  impl_->writer = std::make_unique<RowWriter>(s.database_path, s.queue_capacity, s.flush_interval);
  impl_->load_state();
}

RolloutController::~RolloutController() { stop(); }

void RolloutController::start(const std::string& crash_note) {
  auto& d = *impl_;
  if (d.started) return;
  d.started = true;
  d.guard_against_crash_loop(crash_note);
  d.retention();  // also at start: a daemon restarted daily would otherwise never reach the hourly pass
  d.writer->start();
  d.scheduler = std::thread([&d] { d.schedule(); });
}

void RolloutController::stop() {
  auto& d = *impl_;
  if (!d.started || d.stopped) return;
  d.stopped = true;
  {
    std::lock_guard lock(d.scheduler_mu);
    d.stopping = true;
  }
  d.scheduler_wake.notify_all();
  d.scheduler.join();
  d.writer->stop();
  try {
    d.store->end_run(d.daemon_run_id);
  } catch (const std::exception& e) {
    spdlog::error("rollout: cannot record the clean stop: {}", e.what());
  }
}

void RolloutController::update_settings(RolloutSettings settings) {
  std::lock_guard lock(impl_->settings_mu);
  impl_->settings = std::make_shared<const RolloutSettings>(std::move(settings));
}

Assignment RolloutController::assign(const std::string& pipeline, const std::string& sticky_key, std::optional<Arm> forced) const {
  const auto s = impl_->snapshot();
  Assignment a;
  a.started_ms = now_ms();
  if (auto o = s->stable_overrides.find(pipeline); o != s->stable_overrides.end()) a.variants = o->second;
  auto it = s->latest.find(pipeline);
  if (it == s->latest.end() || !it->second.active()) return a;
  const Rollout& r = it->second;
  a.rollout_id = r.id;
  if (sticky_key.empty()) {
    thread_local std::mt19937 rng{std::random_device{}()};
    a.bucket = static_cast<int>(rng() % kBuckets);
  } else {
    a.bucket = bucket_of(r.salt(), sticky_key);
  }
  a.arm = a.bucket < r.percent_bp ? Arm::Candidate : Arm::Stable;
  const auto c = impl_->cfg();
  if (forced && c->allow_force_header) a.arm = *forced;
  if (a.arm == Arm::Candidate) {
    for (const auto& [stage, variant] : r.variants) a.variants[stage] = variant;
    const PipelineCatalog* p = c->pipeline(pipeline);
    a.fallback_whole_request = p != nullptr && p->fallback_whole_request;
  } else if (r.shadow_bp > 0 && bucket_of(r.salt() + "#shadow", sticky_key.empty() ? std::to_string(a.bucket) : sticky_key) < r.shadow_bp) {
    a.shadow = true;
    a.shadow_variants = a.variants;
    for (const auto& [stage, variant] : r.variants) a.shadow_variants[stage] = variant;
  }
  std::lock_guard lock(impl_->running_mu);
  impl_->running[pipeline].insert(a.started_ms);
  return a;
}

void RolloutController::record(RequestRecord record) {
  if (record.rollout_id != 0) {
    std::lock_guard lock(impl_->running_mu);
    auto& starts = impl_->running[record.pipeline];
    if (auto it = starts.find(record.time_ms); it != starts.end()) starts.erase(it);
  }
  impl_->writer->push(std::move(record));
}

void RolloutController::record_shadow(ShadowRecord record) { impl_->writer->push(std::move(record)); }

std::string RolloutController::compare_outputs(const nlohmann::json& stable, const nlohmann::json& candidate) const {
  return first_difference(stable, candidate, impl_->cfg()->shadow_rules);
}

Result<Changed> RolloutController::start_or_update(const RolloutChange& change) { return impl_->start_or_update(change); }
Result<Changed> RolloutController::rollback(const Target& target) { return impl_->rollback(target); }
Result<Changed> RolloutController::promote(const Target& target) { return impl_->set_status(target, "promote"); }
Result<Changed> RolloutController::pause(const Target& target) { return impl_->set_status(target, "pause"); }
Result<Changed> RolloutController::resume(const Target& target) { return impl_->set_status(target, "resume"); }

Status RolloutController::status() const {
  auto& d = *impl_;
  Status out;
  const auto s = d.snapshot();
  for (const auto& p : d.cfg()->pipelines) {
    Status::Pipeline entry;
    if (auto it = s->latest.find(p.name); it != s->latest.end()) entry.rollout = it->second;
    if (auto o = s->stable_overrides.find(p.name); o != s->stable_overrides.end()) entry.stable_overrides = o->second;
    {
      std::lock_guard lock(d.verdict_mu);
      if (auto v = d.verdicts.find(p.name); v != d.verdicts.end() && entry.rollout && v->second.n_candidate >= 0) entry.verdict = v->second;
    }
    out.pipelines[p.name] = std::move(entry);
  }
  try {
    out.recent_events = d.store->events(0, 20);
  } catch (const std::exception&) {
  }
  out.metrics = d.writer->counters();
  return out;
}

Result<nlohmann::json> RolloutController::report(const ReportQuery& query) {
  try {
    return impl_->report(query);
  } catch (const std::exception& e) {
    return Error{Error::Kind::Unavailable, std::string("metrics database error: ") + e.what()};
  }
}

void RolloutController::evaluate_guardrails_now() { impl_->evaluate(); }
void RolloutController::flush() { impl_->writer->flush(); }

}  // namespace pipelined::rollout

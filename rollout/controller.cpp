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
#include "rollout/controller_impl.h"

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
  json pipelines_json = json::object();
  for (const auto& [name, p] : pipelines) {
    pipelines_json[name] = {{"rollout", p.rollout ? p.rollout->to_json() : json(nullptr)}, {"stable_overrides", p.stable_overrides}};
    if (p.verdict) pipelines_json[name]["decision"] = verdict_json(*p.verdict);
  }
  json events = json::array();
  for (const auto& e : recent_events) events.push_back(e.to_json());
  json out = {{"pipelines", pipelines_json},
          {"recent_events", events},
          {"metrics",
           {{"written", metrics.written},
            {"queued", metrics.queued},
            {"lost", metrics.lost()},
            {"lost_by_cause",
             {{"queue_full", metrics.lost_queue_full},
              {"locked", metrics.lost_locked},
              {"disk_full", metrics.lost_disk_full},
              {"unavailable", metrics.lost_unavailable}}},
            {"waiting_for_database", metrics.waiting}}}};
  out["database"] = {{"shared", shared_database}};
  if (!shared_database) return out;
  // Replicas: seen_ms_ago says who is alive; "lost" ones stopped without a clean stop.
  json list = json::array();
  const std::int64_t now = now_ms();
  for (const auto& r : replicas)
    list.push_back({{"id", r.id},
                    {"host", r.host},
                    {"pid", r.pid},
                    {"this", r.id == replica_id},
                    {"deciding", r.deciding},
                    {"plugin_generation", r.plugin_generation},
                    {"started_ms", r.started_ms},
                    {"seen_ms", r.seen_ms},
                    {"seen_ms_ago", now - r.seen_ms},
                    {"live", now - r.seen_ms <= replica_timeout_ms}});
  out["replicas"] = list;
  out["replica"] = {{"id", replica_id}, {"deciding", deciding}};
  return out;
}

namespace {

Error invalid(std::string m) { return {Error::Kind::Invalid, std::move(m)}; }
Error conflict(std::string m) { return {Error::Kind::Conflict, std::move(m)}; }

}  // namespace

void RolloutController::Impl::load_state() {
  auto s = std::make_shared<RolloutState>();
  for (auto& r : store->latest_rollouts()) s->latest[r.pipeline] = r;
  s->stable_overrides = store->stable_overrides();
  std::lock_guard lock(state_mu);
  state = s;
}

Result<Changed> RolloutController::Impl::change(Rollout r, const std::string& actor, const std::string& action, const std::string& reason,
                                                json details) {
  r.updated_ms = now_ms();
  r.reason = reason;
  RolloutEvent event{0, r.updated_ms, actor, action, reason, r.percent_bp, std::move(details)};
  bool persisted = true;
  auto persist = [&] {
    try {
      store->save(r, event);
      unpersisted.erase(r.pipeline);
    } catch (const std::exception& e) {
      spdlog::error("rollout: could not persist {} of rollout {} ({}): {}", action, r.id, r.pipeline, e.what());
      persisted = false;
      if (r.id != 0) unpersisted[r.pipeline] = {r, event};
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

Result<std::string> RolloutController::Impl::pick_pipeline(const std::string& named) const {
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

Result<Changed> RolloutController::Impl::start_or_update(const RolloutChange& c) {
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
    if (steps[i] <= 0 || steps[i] > 100 || (i > 0 && steps[i] <= steps[i - 1]))
      return invalid("'steps' must be increasing percents in (0, 100]");

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

Result<Changed> RolloutController::Impl::rollback(const Target& t, json details) {
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

Result<Changed> RolloutController::Impl::set_status(const Target& t, const std::string& action, json details) {
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

RolloutController::RolloutController(RolloutSettings settings) : impl_(std::make_unique<Impl>()) {
  impl_->settings = std::make_shared<const RolloutSettings>(std::move(settings));
  const auto& s = *impl_->settings;
  impl_->store = std::make_unique<MetricsStore>(s.database);
  impl_->writer = std::make_unique<RowWriter>(s.database, s.queue_capacity, s.flush_interval);
  impl_->started_ms = now_ms();
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
  if (d.store->database().shared()) {
    d.heartbeat();  // take the lease now if it is free: the first guardrail pass need not wait
    // Listening before start() returns: a change made on another replica from now on is heard.
    d.replica = std::thread([&d, listener = d.listen()]() mutable { d.replica_loop(std::move(listener)); });
  }
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
  if (d.replica.joinable()) d.replica.join();
  d.writer->stop();
  if (d.store->database().shared()) {
    try {
      d.store->forget_replica(d.cfg()->replica_id);  // a clean stop: no longer a replica; a killed one stays, shown as lost
    } catch (const std::exception& e) {
      spdlog::warn("rollout: cannot remove this replica's row: {}", e.what());
    }
  }
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
  out.replica_id = d.cfg()->replica_id;
  out.replica_timeout_ms = d.cfg()->replica_timeout.count();
  out.deciding = d.deciding;
  out.shared_database = d.store->database().shared();
  if (out.shared_database) {
    std::lock_guard lock(d.replicas_mu);
    out.replicas = d.replicas;
  }
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
void RolloutController::set_plugin_generation_source(std::function<std::int64_t()> source) {
  impl_->plugin_generation = std::move(source);
}
void RolloutController::flush() { impl_->writer->flush(); }

}  // namespace pipelined::rollout

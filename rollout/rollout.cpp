#include "rollout/rollout.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "rollout/assignment.h"
#include "rollout/compare.h"
#include "rollout/report.h"
#include "rollout/store.h"

namespace pipelined::rollout {

using nlohmann::json;

const char* to_string(Arm arm) { return arm == Arm::Candidate ? "candidate" : "stable"; }

namespace {

// One rollout as persisted in the `rollouts` table.
struct Rollout {
  std::int64_t id = 0;
  std::string pipeline;
  std::map<std::string, std::string> variants;  // stage -> candidate variant
  int percent_bp = 0;
  int shadow_bp = 0;
  std::string status;  // live | paused | rolled_back | promoted | completed
  std::vector<double> steps;
  int step_index = -1;
  std::int64_t dwell_ms = 0, step_ms = 0, created_ms = 0, updated_ms = 0;
  std::string reason;

  bool active() const { return status == "live" || status == "paused" || status == "completed"; }
  std::string salt() const { return pipeline + "#" + std::to_string(id); }
  json to_json() const {
    return {{"id", id},         {"pipeline", pipeline},   {"variants", variants},         {"percent", percent_bp / 100.0},
            {"shadow_percent", shadow_bp / 100.0}, {"status", status}, {"steps", steps}, {"step_index", step_index},
            {"dwell_ms", dwell_ms}, {"step_started_ms", step_ms}, {"created_ms", created_ms}, {"updated_ms", updated_ms},
            {"reason", reason}};
  }
};

// What assign() reads: replaced whole on every change, never modified in place.
struct RolloutState {
  std::map<std::string, Rollout> latest;  // pipeline -> its most recent rollout
  std::map<std::string, std::map<std::string, std::string>> stable_overrides;  // promoted variants
};

AdminResponse error(int status, const std::string& message) {
  return {status, {{"error", {{"status", status}, {"message", message}}}}};
}

// "30s", "15m", "1h", "7d" -> milliseconds; -1 when malformed.
std::int64_t parse_duration_ms(const std::string& text) {
  if (text.size() < 2) return -1;
  char* end = nullptr;
  const double n = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || n < 0 || std::string(end).size() != 1) return -1;
  switch (*end) {
    case 's': return static_cast<std::int64_t>(n * 1000);
    case 'm': return static_cast<std::int64_t>(n * 60'000);
    case 'h': return static_cast<std::int64_t>(n * 3'600'000);
    case 'd': return static_cast<std::int64_t>(n * 86'400'000);
    default: return -1;
  }
}

std::string query_value(const std::string& target, const std::string& name) {
  const auto q = target.find('?');
  if (q == std::string::npos) return "";
  std::string rest = target.substr(q + 1);
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto amp = rest.find('&', pos);
    const std::string pair = rest.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string::npos ? "" : pair.substr(eq + 1);
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return "";
}

}  // namespace

struct RolloutController::Impl {
  mutable std::mutex config_mu;
  std::shared_ptr<const config::Config> config;
  mutable std::mutex state_mu;
  std::shared_ptr<const RolloutState> state = std::make_shared<RolloutState>();

  std::mutex db_mu;  // the admin/scheduler connection
  std::unique_ptr<SQLite::Database> db;
  std::unique_ptr<RowWriter> writer;

  std::mutex scheduler_mu;
  std::condition_variable scheduler_wake;
  bool stopping = false, started = false, stopped = false;
  std::thread scheduler;
  std::int64_t daemon_run_id = 0;

  std::shared_ptr<const config::Config> cfg() const {
    std::lock_guard lock(config_mu);
    return config;
  }
  std::shared_ptr<const RolloutState> snapshot() const {
    std::lock_guard lock(state_mu);
    return state;
  }
  void publish(std::shared_ptr<const RolloutState> next) {
    std::lock_guard lock(state_mu);
    state = std::move(next);
  }

  void load_state() {
    auto s = std::make_shared<RolloutState>();
    SQLite::Statement q(*db,
                        "SELECT id, pipeline, variants, percent_bp, shadow_bp, status, steps, step_index, dwell_ms, step_ms, "
                        "created_ms, updated_ms, reason FROM rollouts WHERE id IN (SELECT MAX(id) FROM rollouts GROUP BY pipeline)");
    while (q.executeStep()) {
      Rollout r;
      r.id = q.getColumn(0).getInt64();
      r.pipeline = q.getColumn(1).getString();
      r.variants = json::parse(q.getColumn(2).getString()).get<std::map<std::string, std::string>>();
      r.percent_bp = q.getColumn(3).getInt();
      r.shadow_bp = q.getColumn(4).getInt();
      r.status = q.getColumn(5).getString();
      r.steps = json::parse(q.getColumn(6).getString()).get<std::vector<double>>();
      r.step_index = q.getColumn(7).getInt();
      r.dwell_ms = q.getColumn(8).getInt64();
      r.step_ms = q.getColumn(9).getInt64();
      r.created_ms = q.getColumn(10).getInt64();
      r.updated_ms = q.getColumn(11).getInt64();
      r.reason = q.getColumn(12).getString();
      s->latest[r.pipeline] = r;
    }
    SQLite::Statement o(*db, "SELECT pipeline, stage, variant FROM stable_overrides");
    while (o.executeStep()) s->stable_overrides[o.getColumn(0).getString()][o.getColumn(1).getString()] = o.getColumn(2).getString();
    publish(s);
  }

  // Writes the rollout row and an event. The in-memory state is already swapped by the caller:
  // a rollback takes effect even when the database cannot be written, and says so.
  bool persist(Rollout& r, const std::string& actor, const std::string& action, const std::string& reason) {
    std::lock_guard lock(db_mu);
    try {
      SQLite::Transaction t(*db);
      if (r.id == 0) {
        SQLite::Statement ins(*db,
                              "INSERT INTO rollouts (pipeline, variants, percent_bp, shadow_bp, status, steps, step_index, dwell_ms, "
                              "step_ms, created_ms, updated_ms, reason) VALUES (?, '{}', 0, 0, 'live', '[]', -1, 0, 0, ?, ?, '')");
        ins.bind(1, r.pipeline);
        ins.bind(2, r.created_ms);
        ins.bind(3, r.created_ms);
        ins.exec();
        r.id = db->getLastInsertRowid();
      }
      SQLite::Statement up(*db,
                           "UPDATE rollouts SET variants = ?, percent_bp = ?, shadow_bp = ?, status = ?, steps = ?, step_index = ?, "
                           "dwell_ms = ?, step_ms = ?, updated_ms = ?, reason = ? WHERE id = ?");
      up.bind(1, json(r.variants).dump());
      up.bind(2, r.percent_bp);
      up.bind(3, r.shadow_bp);
      up.bind(4, r.status);
      up.bind(5, json(r.steps).dump());
      up.bind(6, r.step_index);
      up.bind(7, r.dwell_ms);
      up.bind(8, r.step_ms);
      up.bind(9, r.updated_ms);
      up.bind(10, r.reason);
      up.bind(11, r.id);
      up.exec();
      SQLite::Statement ev(*db, "INSERT INTO rollout_events (rollout_id, time_ms, actor, action, reason, percent_bp) VALUES (?, ?, ?, ?, ?, ?)");
      ev.bind(1, r.id);
      ev.bind(2, r.updated_ms);
      ev.bind(3, actor);
      ev.bind(4, action);
      ev.bind(5, reason);
      ev.bind(6, r.percent_bp);
      ev.exec();
      t.commit();
      return true;
    } catch (const std::exception& e) {
      spdlog::error("rollout: could not persist {} of rollout {} ({}): {}", action, r.id, r.pipeline, e.what());
      return false;
    }
  }

  // Applies `change` to the pipeline's rollout: the new state is published first, then persisted.
  // A new rollout (id 0) is persisted first, since its id is its salt.
  AdminResponse change(const std::string& pipeline, Rollout r, const std::string& actor, const std::string& action,
                       const std::string& reason) {
    r.updated_ms = now_ms();
    r.reason = reason;
    bool persisted = true;
    if (r.id == 0) persisted = persist(r, actor, action, reason);
    if (r.id == 0) return error(503, "metrics database unavailable: the rollout could not be created");
    {
      std::lock_guard lock(state_mu);
      auto next = std::make_shared<RolloutState>(*state);
      next->latest[pipeline] = r;
      state = next;
    }
    if (action != "start") persisted = persist(r, actor, action, reason);
    spdlog::info("rollout {} ({}): {} by {} at {:.2f} %{}{}", r.id, pipeline, action, actor, r.percent_bp / 100.0,
                 reason.empty() ? "" : ": ", reason);
    return {200, {{"rollout", r.to_json()}, {"persisted", persisted}}};
  }

  AdminResponse rollback(const std::string& pipeline, const std::string& actor, const std::string& reason) {
    const auto s = snapshot();
    std::vector<std::string> targets;
    for (const auto& [p, r] : s->latest)
      if ((pipeline.empty() || p == pipeline) && r.active()) targets.push_back(p);
    if (targets.empty()) return error(409, pipeline.empty() ? "no rollout is live" : "no rollout is live for pipeline '" + pipeline + "'");
    json done = json::array();
    bool persisted = true;
    for (const auto& p : targets) {
      Rollout r = s->latest.at(p);
      r.status = "rolled_back";
      r.percent_bp = 0;
      r.shadow_bp = 0;
      auto res = change(p, r, actor, "rollback", reason.empty() ? "rolled back by " + actor : reason);
      persisted = persisted && res.body.value("persisted", false);
      done.push_back(res.body["rollout"]);
    }
    return {200, {{"rolled_back", done}, {"persisted", persisted}}};
  }

  // The scheduler: guardrails and steps every guardrail_interval, retention hourly.
  void schedule() {
    auto last_retention = std::chrono::steady_clock::now() - std::chrono::hours(2);
    std::unique_lock lock(scheduler_mu);
    while (!stopping) {
      scheduler_wake.wait_for(lock, cfg()->rollout.guardrail_interval, [this] { return stopping; });
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
    const auto c = cfg();
    const std::int64_t cutoff = now_ms() - static_cast<std::int64_t>(c->metrics.retention_days) * 86'400'000;
    std::lock_guard lock(db_mu);
    try {
      db->exec("DELETE FROM requests WHERE time_ms < " + std::to_string(cutoff));  // stage_runs cascade
      db->exec("DELETE FROM shadow_results WHERE time_ms < " + std::to_string(cutoff));
    } catch (const std::exception& e) {
      spdlog::warn("rollout: retention pass failed: {}", e.what());
    }
  }

  void evaluate() {
    const auto c = cfg();
    writer->flush();  // judge on every row recorded so far
    const std::int64_t now = now_ms();
    const auto current = snapshot();  // held: the loop may publish newer states
    for (const auto& [pipeline, r] : current->latest) {
      if (r.status != "live") continue;
      std::map<std::string, ArmSamples> arms;
      ShadowSamples shadow;
      try {
        std::lock_guard lock(db_mu);
        arms = load_arms(*db, pipeline, now - c->rollout.guardrail_window.count(), r.id, false);
        shadow = load_shadow(*db, pipeline, now - c->rollout.guardrail_window.count(), r.id);
      } catch (const std::exception& e) {
        spdlog::warn("rollout: guardrails skipped for {}: {}", pipeline, e.what());
        continue;
      }
      const Verdict v = judge(c->rollout, arms["stable"], arms["candidate"], shadow);
      if (!v.failures.empty()) {
        spdlog::warn("rollout {} ({}): guardrail tripped: {}", r.id, pipeline, v.text());
        rollback(pipeline, "guardrail", v.text());
        continue;
      }
      // Step schedule: the next step after the dwell, only when the guardrails could judge and passed.
      if (r.steps.empty() || r.step_index + 1 >= static_cast<int>(r.steps.size()) || now - r.step_ms < r.dwell_ms) continue;
      if (!v.enough) continue;
      Rollout next = r;
      ++next.step_index;
      next.percent_bp = percent_to_bp(r.steps[static_cast<std::size_t>(next.step_index)]);
      next.step_ms = now;
      if (next.percent_bp >= kBuckets) next.status = "completed";
      change(pipeline, next, "schedule", next.status == "completed" ? "complete" : "step",
             "guardrails passed after " + std::to_string(r.dwell_ms / 1000) + " s at " + std::to_string(r.percent_bp / 100.0));
    }
  }

  AdminResponse start_or_update(const json& body) {
    const auto c = cfg();
    const auto s = snapshot();
    std::string pipeline = body.value("pipeline", "");
    if (pipeline.empty()) {
      std::vector<std::string> active;
      for (const auto& [p, r] : s->latest)
        if (r.active()) active.push_back(p);
      if (active.size() == 1) pipeline = active[0];
      else if (c->pipelines.size() == 1) pipeline = c->pipelines[0].name;
      else {
        std::string names;
        for (const auto& p : c->pipelines) names += (names.empty() ? "" : ", ") + p.name;
        return error(400, "name the pipeline: one of " + names);
      }
    }
    const config::PipelineConfig* p = c->pipeline(pipeline);
    if (p == nullptr) return error(404, "unknown pipeline '" + pipeline + "'");
    if (!body.contains("percent") || !body["percent"].is_number()) return error(400, "'percent' (0-100) is required");
    const double percent = body["percent"].get<double>();
    if (percent < 0 || percent > 100) return error(400, "'percent' must be between 0 and 100");
    const double shadow = body.value("shadow_percent", 0.0);
    if (shadow < 0 || shadow > 100) return error(400, "'shadow_percent' must be between 0 and 100");

    std::map<std::string, std::string> variants;
    if (body.contains("stages") && body["stages"].is_object() && !body["stages"].empty()) {
      for (const auto& [stage, variant] : body["stages"].items()) {
        const config::StageConfig* sc = p->stage(stage);
        if (sc == nullptr) return error(400, "pipeline '" + pipeline + "' has no stage '" + stage + "'");
        if (!variant.is_string() || sc->variant(variant.get<std::string>()) == nullptr)
          return error(400, "stage '" + stage + "' has no variant " + variant.dump());
        variants[stage] = variant.get<std::string>();
      }
    } else {
      for (const auto& sc : p->stages)
        if (sc.stable != "parallel" && sc.variant("parallel") != nullptr) variants[sc.name] = "parallel";
    }
    if (variants.empty()) return error(400, "pipeline '" + pipeline + "' has no candidate variant (name stages and variants)");

    std::vector<double> steps;
    if (body.contains("steps")) {
      if (!body["steps"].is_array()) return error(400, "'steps' must be a list of percents");
      for (const auto& v : body["steps"]) {
        if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() > 100 || (!steps.empty() && v.get<double>() <= steps.back()))
          return error(400, "'steps' must be increasing percents in (0, 100]");
        steps.push_back(v.get<double>());
      }
    } else {
      steps = c->rollout.steps;
    }
    const std::string actor = body.value("actor", "operator");
    const std::string reason = body.value("reason", "");

    auto current = s->latest.find(pipeline);
    Rollout r;
    std::string action = "start";
    if (current != s->latest.end() && current->second.active() && current->second.variants == variants) {
      r = current->second;  // same candidate: move the share, keep the salt (users keep their buckets)
      action = "set_percent";
      if (r.status == "completed") r.status = "live";
    } else {
      r.pipeline = pipeline;
      r.variants = variants;
      r.status = "live";
      r.created_ms = now_ms();
    }
    r.percent_bp = percent_to_bp(percent);
    r.shadow_bp = percent_to_bp(shadow);
    r.steps = steps;
    r.dwell_ms = body.value("dwell_ms", static_cast<std::int64_t>(c->rollout.step_dwell.count()));
    r.step_index = -1;
    for (std::size_t i = 0; i < steps.size(); ++i)
      if (percent_to_bp(steps[i]) <= r.percent_bp) r.step_index = static_cast<int>(i);
    r.step_ms = now_ms();
    if (r.percent_bp >= kBuckets && r.shadow_bp == 0) r.status = "completed";
    return change(pipeline, r, actor, action, reason);
  }

  AdminResponse set_status(const json& body, const std::string& action) {
    const auto s = snapshot();
    std::string pipeline = body.value("pipeline", "");
    if (pipeline.empty()) {
      for (const auto& [p, r] : s->latest)
        if (r.active()) {
          if (!pipeline.empty()) return error(400, "several rollouts are live: name the pipeline");
          pipeline = p;
        }
    }
    auto it = s->latest.find(pipeline);
    if (it == s->latest.end() || !it->second.active()) return error(409, "no rollout is live" + (pipeline.empty() ? "" : " for pipeline '" + pipeline + "'"));
    Rollout r = it->second;
    const std::string actor = body.value("actor", "operator");
    const std::string reason = body.value("reason", "");
    if (action == "pause") {
      if (r.status == "paused") return error(409, "the rollout is already paused");
      r.status = "paused";
    } else if (action == "resume") {
      if (r.status != "paused") return error(409, "the rollout is not paused");
      r.status = "live";
      r.step_ms = now_ms();
    } else {  // promote
      r.status = "promoted";
      r.percent_bp = 0;
      r.shadow_bp = 0;
      {
        std::lock_guard lock(state_mu);
        auto next = std::make_shared<RolloutState>(*state);
        for (const auto& [stage, variant] : r.variants) next->stable_overrides[pipeline][stage] = variant;
        state = next;
      }
      std::lock_guard lock(db_mu);
      try {
        for (const auto& [stage, variant] : r.variants) {
          SQLite::Statement q(*db, "INSERT OR REPLACE INTO stable_overrides (pipeline, stage, variant) VALUES (?, ?, ?)");
          q.bind(1, pipeline);
          q.bind(2, stage);
          q.bind(3, variant);
          q.exec();
        }
      } catch (const std::exception& e) {
        spdlog::error("rollout: could not persist the promotion of {}: {}", pipeline, e.what());
      }
    }
    return change(pipeline, r, actor, action, reason);
  }

  json status_json() {
    const auto s = snapshot();
    const auto c = cfg();
    json pipelines = json::object();
    for (const auto& p : c->pipelines) {
      auto it = s->latest.find(p.name);
      json overrides = s->stable_overrides.count(p.name) ? json(s->stable_overrides.at(p.name)) : json::object();
      pipelines[p.name] = {{"rollout", it == s->latest.end() ? json(nullptr) : it->second.to_json()}, {"stable_overrides", overrides}};
    }
    const WriterCounters w = writer->counters();
    json events = json::array();
    {
      std::lock_guard lock(db_mu);
      try {
        SQLite::Statement q(*db, "SELECT rollout_id, time_ms, actor, action, reason, percent_bp FROM rollout_events ORDER BY id DESC LIMIT 20");
        while (q.executeStep())
          events.push_back({{"rollout_id", q.getColumn(0).getInt64()}, {"time_ms", q.getColumn(1).getInt64()},
                            {"actor", q.getColumn(2).getString()}, {"action", q.getColumn(3).getString()},
                            {"reason", q.getColumn(4).getString()}, {"percent", q.getColumn(5).getInt() / 100.0}});
      } catch (const std::exception&) {
      }
    }
    return {{"pipelines", pipelines},
            {"recent_events", events},
            {"metrics", {{"written", w.written}, {"queued", w.queued}, {"lost", w.lost()},
                         {"lost_by_cause", {{"queue_full", w.lost_queue_full}, {"locked", w.lost_locked},
                                            {"disk_full", w.lost_disk_full}, {"unavailable", w.lost_unavailable}}}}}};
  }
};

RolloutController::RolloutController(std::shared_ptr<const config::Config> config) : impl_(std::make_unique<Impl>()) {
  impl_->config = config;
  impl_->db = open_database(config->metrics.database_path);
  impl_->writer = std::make_unique<RowWriter>(config->metrics.database_path, config->metrics.queue_capacity, config->metrics.flush_interval);
  impl_->load_state();
}

RolloutController::~RolloutController() { stop(); }

void RolloutController::start() {
  auto& d = *impl_;
  if (d.started) return;
  d.started = true;
  // A daemon run that never stopped cleanly while a rollout was live: the candidate may be what
  // crashed it, so it does not come back serving as before.
  bool unclean = false;
  {
    std::lock_guard lock(d.db_mu);
    try {
      SQLite::Statement q(*d.db, "SELECT COUNT(*) FROM daemon_runs WHERE stopped_ms IS NULL");
      unclean = q.executeStep() && q.getColumn(0).getInt() > 0;
      d.db->exec("UPDATE daemon_runs SET stopped_ms = -1 WHERE stopped_ms IS NULL");
      SQLite::Statement ins(*d.db, "INSERT INTO daemon_runs (started_ms) VALUES (?)");
      ins.bind(1, now_ms());
      ins.exec();
      d.daemon_run_id = d.db->getLastInsertRowid();
    } catch (const std::exception& e) {
      spdlog::error("rollout: cannot record the daemon run: {}", e.what());
    }
  }
  if (unclean) {
    const bool pause = d.cfg()->rollout.resume_paused_after_crash;
    const auto current = d.snapshot();
    for (const auto& [pipeline, r] : current->latest) {
      if (r.status != "live") continue;
      Rollout next = r;
      if (pause) next.status = "paused";
      else next.percent_bp = 0;
      d.change(pipeline, next, "daemon", pause ? "pause" : "set_percent",
               "the previous daemon stopped without a clean shutdown while this rollout was live");
    }
  }
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
  std::lock_guard lock(d.db_mu);
  try {
    SQLite::Statement q(*d.db, "UPDATE daemon_runs SET stopped_ms = ? WHERE id = ?");
    q.bind(1, now_ms());
    q.bind(2, d.daemon_run_id);
    q.exec();
  } catch (const std::exception& e) {
    spdlog::error("rollout: cannot record the clean stop: {}", e.what());
  }
}

void RolloutController::update_config(std::shared_ptr<const config::Config> config) {
  std::lock_guard lock(impl_->config_mu);
  impl_->config = std::move(config);
}

Assignment RolloutController::assign(const std::string& pipeline, const std::string& sticky_key, std::optional<Arm> forced) const {
  const auto s = impl_->snapshot();
  Assignment a;
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
  if (forced && c->rollout.allow_force_header) a.arm = *forced;
  if (a.arm == Arm::Candidate) {
    for (const auto& [stage, variant] : r.variants) a.variants[stage] = variant;
    const config::PipelineConfig* p = c->pipeline(pipeline);
    a.fallback_whole_request = p != nullptr && p->fallback_whole_request;
  } else if (r.shadow_bp > 0 && bucket_of(r.salt() + "#shadow", sticky_key.empty() ? std::to_string(a.bucket) : sticky_key) < r.shadow_bp) {
    a.shadow = true;
    a.shadow_variants = a.variants;
    for (const auto& [stage, variant] : r.variants) a.shadow_variants[stage] = variant;
  }
  return a;
}

void RolloutController::record(RequestRecord record) { impl_->writer->push(std::move(record)); }
void RolloutController::record_shadow(ShadowRecord record) { impl_->writer->push(std::move(record)); }

std::string RolloutController::compare_outputs(const nlohmann::json& stable, const nlohmann::json& candidate) const {
  const auto c = impl_->cfg();
  return first_difference(stable, candidate, {c->rollout.shadow_ignore_fields, c->rollout.shadow_ignore_array_order});
}

void RolloutController::evaluate_guardrails_now() { impl_->evaluate(); }
void RolloutController::flush() { impl_->writer->flush(); }

AdminResponse RolloutController::handle_admin(const std::string& method, const std::string& target, const std::string& body_text) {
  auto& d = *impl_;
  const std::string path = target.substr(0, target.find('?'));
  json body = json::object();
  if (method == "POST" && !body_text.empty()) {
    body = json::parse(body_text, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return error(400, "the body must be a JSON object");
  }
  try {
    if (path == "/admin/rollout" && method == "GET") return {200, d.status_json()};
    if (path == "/admin/rollout" && method == "POST") return d.start_or_update(body);
    if (path == "/admin/rollout/rollback" && method == "POST")
      return d.rollback(body.value("pipeline", ""), body.value("actor", "operator"), body.value("reason", ""));
    if (path == "/admin/rollout/promote" && method == "POST") return d.set_status(body, "promote");
    if (path == "/admin/rollout/pause" && method == "POST") return d.set_status(body, "pause");
    if (path == "/admin/rollout/resume" && method == "POST") return d.set_status(body, "resume");
    if (path == "/admin/report" && method == "GET") {
      const std::string since = query_value(target, "since");
      const std::int64_t window = since.empty() ? 3'600'000 : parse_duration_ms(since);
      if (window < 0) return error(400, "bad 'since' " + since + " (use 30s, 15m, 1h, 7d)");
      const std::string pipeline = query_value(target, "pipeline");
      const auto c = d.cfg();
      if (!pipeline.empty() && c->pipeline(pipeline) == nullptr) return error(404, "unknown pipeline '" + pipeline + "'");
      d.writer->flush();
      std::lock_guard lock(d.db_mu);
      json report = build_report(*d.db, *c, now_ms() - window, pipeline);
      const WriterCounters w = d.writer->counters();
      report["rows_lost"] = w.lost();
      report["rows_written"] = w.written;
      report["criteria"] = {{"min_success_rate", c->rollout.min_success_rate}, {"min_time_saved", c->rollout.min_time_saved},
                            {"max_memory_increase", c->rollout.max_memory_increase}, {"min_samples_per_arm", c->rollout.min_samples_per_arm}};
      return {200, report};
    }
  } catch (const std::exception& e) {
    return error(503, std::string("metrics database error: ") + e.what());
  }
  return error(404, "no admin route " + method + " " + path);
}

}  // namespace pipelined::rollout

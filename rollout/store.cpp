#include "rollout/store.h"

#include <nlohmann/json.hpp>

#include <chrono>

#include "rollout/columns.h"

namespace pipelined::rollout {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

using nlohmann::json;

namespace {

Rollout read_rollout(const SqlRow& q) {
  Rollout r;
  r.id = q.integer(0);
  r.pipeline = q.text(1);
  r.variants = json::parse(q.text(2)).get<std::map<std::string, std::string>>();
  r.percent_bp = static_cast<int>(q.integer(3));
  r.shadow_bp = static_cast<int>(q.integer(4));
  r.status = parse_status(q.text(5)).value_or(RolloutStatus::Paused);
  r.steps = json::parse(q.text(6)).get<std::vector<double>>();
  r.step_index = static_cast<int>(q.integer(7));
  r.dwell_ms = q.integer(8);
  r.step_ms = q.integer(9);
  r.created_ms = q.integer(10);
  r.updated_ms = q.integer(11);
  r.reason = q.text(12);
  r.paused_percent_bp = static_cast<int>(q.integer(13));
  return r;
}

constexpr const char* kRolloutColumns =
    "SELECT id, pipeline, variants, percent_bp, shadow_bp, status, steps, step_index, dwell_ms, step_ms, created_ms, "
    "updated_ms, reason, paused_percent_bp FROM rollouts ";

// The parameters of "pipeline = ? AND time_ms >= ? AND time_ms < ? AND rollout_id = ?".
std::vector<SqlValue> window_params(const std::string& pipeline, const Window& w) {
  return {pipeline, w.since_ms, w.until_ms, w.rollout_id};
}
constexpr const char* kWindow = "pipeline = ? AND time_ms >= ? AND time_ms < ? AND rollout_id = ?";

}  // namespace

MetricsStore::MetricsStore(const std::string& location) : db_(open_database(location)) {}

std::vector<Rollout> MetricsStore::latest_rollouts() {
  std::lock_guard lock(mu_);
  std::vector<Rollout> out;
  db_->query(std::string(kRolloutColumns) + "WHERE id IN (SELECT MAX(id) FROM rollouts GROUP BY pipeline)", {},
             [&](const SqlRow& q) { out.push_back(read_rollout(q)); });
  return out;
}

std::optional<Rollout> MetricsStore::rollout(std::int64_t id) {
  std::lock_guard lock(mu_);
  std::optional<Rollout> out;
  db_->query(std::string(kRolloutColumns) + "WHERE id = ?", {id}, [&](const SqlRow& q) { out = read_rollout(q); });
  return out;
}

std::map<std::string, std::map<std::string, std::string>> MetricsStore::stable_overrides() {
  std::lock_guard lock(mu_);
  std::map<std::string, std::map<std::string, std::string>> out;
  db_->query("SELECT pipeline, stage, variant FROM stable_overrides", {}, [&](const SqlRow& o) { out[o.text(0)][o.text(1)] = o.text(2); });
  return out;
}

void MetricsStore::save(Rollout& r, RolloutEvent event) {
  std::lock_guard lock(mu_);
  Rollout saved = r;
  db_->transaction([&] {
    if (saved.id == 0) {
      db_->query(
          "INSERT INTO rollouts (pipeline, variants, percent_bp, shadow_bp, status, steps, step_index, dwell_ms, step_ms, created_ms, "
          "updated_ms, reason) VALUES (?, '{}', 0, 0, 'live', '[]', -1, 0, 0, ?, ?, '') RETURNING id",
          {saved.pipeline, saved.created_ms, saved.created_ms}, [&](const SqlRow& row) { saved.id = row.integer(0); });
    }
    db_->query(
        "UPDATE rollouts SET variants = ?, percent_bp = ?, shadow_bp = ?, status = ?, steps = ?, step_index = ?, dwell_ms = ?, "
        "step_ms = ?, updated_ms = ?, reason = ?, paused_percent_bp = ? WHERE id = ?",
        {json(saved.variants).dump(), std::int64_t{saved.percent_bp}, std::int64_t{saved.shadow_bp}, std::string(to_string(saved.status)),
         json(saved.steps).dump(), std::int64_t{saved.step_index}, saved.dwell_ms, saved.step_ms, saved.updated_ms, saved.reason,
         std::int64_t{saved.paused_percent_bp}, saved.id});
    db_->query("INSERT INTO rollout_events (rollout_id, time_ms, actor, action, reason, percent_bp, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
               {saved.id, event.time_ms, event.actor, event.action, event.reason, std::int64_t{event.percent_bp},
                event.details.empty() ? std::string() : event.details.dump(-1, ' ', false, json::error_handler_t::replace)});
    db_->notify_change();
  });
  r.id = saved.id;  // only once committed
}

void MetricsStore::save_overrides(const std::string& pipeline, const std::map<std::string, std::string>& variants) {
  std::lock_guard lock(mu_);
  db_->transaction([&] {
    for (const auto& [stage, variant] : variants)
      db_->query(
          "INSERT INTO stable_overrides (pipeline, stage, variant) VALUES (?, ?, ?) "
          "ON CONFLICT (pipeline, stage) DO UPDATE SET variant = excluded.variant",
          {pipeline, stage, variant});
    db_->notify_change();
  });
}

std::vector<RolloutEvent> MetricsStore::events(std::int64_t rollout_id, int limit) {
  std::lock_guard lock(mu_);
  std::vector<RolloutEvent> out;
  db_->query(
      "SELECT rollout_id, time_ms, actor, action, reason, percent_bp, details FROM rollout_events "
      "WHERE (? = 0 OR rollout_id = ?) ORDER BY id DESC LIMIT ?",
      {rollout_id, rollout_id, std::int64_t{limit}}, [&](const SqlRow& q) {
        RolloutEvent e{q.integer(0), q.integer(1), q.text(2), q.text(3), q.text(4), static_cast<int>(q.integer(5))};
        const std::string details = q.text(6);
        if (!details.empty()) e.details = json::parse(details, nullptr, false);
        if (e.details.is_discarded()) e.details = json::object();
        out.push_back(std::move(e));
      });
  return out;
}

bool MetricsStore::last_run_unclean(const std::string& replica) {
  std::lock_guard lock(mu_);
  bool unclean = false;
  db_->query("SELECT COUNT(*) FROM daemon_runs WHERE stopped_ms IS NULL AND replica = ?", {replica},
             [&](const SqlRow& q) { unclean = q.integer(0) > 0; });
  db_->query("UPDATE daemon_runs SET stopped_ms = -1 WHERE stopped_ms IS NULL AND replica = ?", {replica});
  return unclean;
}

std::int64_t MetricsStore::begin_run(const std::string& replica) {
  std::lock_guard lock(mu_);
  std::int64_t id = 0;
  db_->query("INSERT INTO daemon_runs (started_ms, replica) VALUES (?, ?) RETURNING id", {now_ms(), replica},
             [&](const SqlRow& q) { id = q.integer(0); });
  return id;
}

void MetricsStore::end_run(std::int64_t run_id) {
  std::lock_guard lock(mu_);
  db_->query("UPDATE daemon_runs SET stopped_ms = ? WHERE id = ?", {now_ms(), run_id});
}

void MetricsStore::heartbeat(const ReplicaRow& r) {
  std::lock_guard lock(mu_);
  db_->query(
      "INSERT INTO replicas (id, host, pid, started_ms, seen_ms, plugin_generation, deciding, complete_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
      "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, started_ms = excluded.started_ms, "
      "seen_ms = excluded.seen_ms, plugin_generation = excluded.plugin_generation, deciding = excluded.deciding, "
      "complete_ms = excluded.complete_ms",
      {r.id, r.host, r.pid, r.started_ms, r.seen_ms, r.plugin_generation, std::int64_t{r.deciding ? 1 : 0}, r.complete_ms});
}

std::vector<ReplicaRow> MetricsStore::replicas() {
  std::lock_guard lock(mu_);
  std::vector<ReplicaRow> out;
  db_->query(
      "SELECT id, host, pid, started_ms, seen_ms, plugin_generation, deciding, complete_ms FROM replicas ORDER BY id", {},
      [&](const SqlRow& q) {
        out.push_back({q.text(0), q.text(1), q.integer(2), q.integer(3), q.integer(4), q.integer(5), q.integer(6) != 0, q.integer(7)});
      });
  return out;
}

void MetricsStore::forget_replica(const std::string& id) {
  std::lock_guard lock(mu_);
  db_->query("DELETE FROM replicas WHERE id = ?", {id});
}

bool MetricsStore::hold_lease() {
  std::lock_guard lock(mu_);
  return db_->hold_lease();
}

std::unique_ptr<ChangeListener> MetricsStore::listen() {
  std::lock_guard lock(mu_);
  return db_->listen();
}

void MetricsStore::delete_before(std::int64_t cutoff_ms) {
  std::lock_guard lock(mu_);
  // Stage runs first: SQLite's foreign key would cascade, PostgreSQL's schema has none (postgresql_dialect).
  db_->query("DELETE FROM stage_runs WHERE request IN (SELECT id FROM requests WHERE time_ms < ?)", {cutoff_ms});
  db_->query("DELETE FROM requests WHERE time_ms < ?", {cutoff_ms});
  db_->query("DELETE FROM shadow_results WHERE time_ms < ?", {cutoff_ms});
}

std::map<std::string, ArmSamples> MetricsStore::arms(const std::string& pipeline, const Window& w, bool with_stages) {
  std::lock_guard lock(mu_);
  std::map<std::string, ArmSamples> arms;
  std::string figures;
  for (const auto& f : arm_figures()) figures += std::string(", ") + f.expression;
  db_->query("SELECT arm, outcome, latency_us, fell_back, error_class, own_failure, peak_bytes, time_ms" + figures +
                 " FROM requests WHERE " + kWindow,
             window_params(pipeline, w), [&](const SqlRow& q) {
               const std::string outcome = q.text(1);
               if (outcome == "cancelled") return;  // the client left (server-sent events): says nothing about the arm
               ArmSamples& a = arms[q.text(0)];
               const bool user_ok = outcome == "ok" || outcome == "partial";
               if (outcome == "ok")
                 ++a.ok;
               else if (outcome == "partial")
                 ++a.partial;
               else
                 ++a.errors;
               const std::string error_class = q.text(4);
               if (!error_class.empty()) ++a.user_error_classes[error_class];
               // own_failure is "<stage>: <class>"; the guardrails group by class.
               const std::string own = q.text(5);
               const auto colon = own.rfind(": ");
               const bool fell_back = q.integer(3) != 0;
               a.outcomes.add(static_cast<double>(q.integer(2)) / 1000.0, static_cast<double>(q.integer(6)), own.empty(), user_ok,
                              fell_back, colon == std::string::npos ? own : own.substr(colon + 2));
               a.rows.push_back({q.integer(7), user_ok, own.empty(), fell_back});
               int i = 8;
               for (const auto& f : arm_figures()) a.figures[f.name].push_back(q.real(i++));
             });
  if (with_stages) {
    db_->query(
        "SELECT r.arm, s.stage, s.duration_us, s.status FROM stage_runs s JOIN requests r ON r.id = s.request "
        "WHERE r.pipeline = ? AND r.time_ms >= ? AND r.time_ms < ? AND r.rollout_id = ? AND s.status != 'skipped'",
        window_params(pipeline, w), [&](const SqlRow& s) {
          ArmSamples& a = arms[s.text(0)];
          const std::string stage = s.text(1);
          a.stage_ms[stage].push_back(static_cast<double>(s.integer(2)) / 1000.0);
          if (s.text(3) == "fell_back") ++a.stage_fallbacks[stage];
        });
  }
  return arms;
}

std::map<std::string, double> MetricsStore::arm_counts(const std::string& pipeline, const Window& w) {
  std::lock_guard lock(mu_);
  std::map<std::string, double> out;
  db_->query(std::string("SELECT arm, COUNT(*) FROM requests WHERE ") + kWindow + " GROUP BY arm", window_params(pipeline, w),
             [&](const SqlRow& q) { out[q.text(0)] = static_cast<double>(q.integer(1)); });
  return out;
}

ShadowOutcomes MetricsStore::shadow(const std::string& pipeline, const Window& w) {
  std::lock_guard lock(mu_);
  ShadowOutcomes s;
  db_->query(std::string("SELECT COUNT(*), COALESCE(SUM(1 - matched), 0) FROM shadow_results WHERE ") + kWindow, window_params(pipeline, w),
             [&](const SqlRow& q) {
               s.compared = static_cast<double>(q.integer(0));
               s.mismatched = static_cast<double>(q.integer(1));
             });
  return s;
}

}  // namespace pipelined::rollout

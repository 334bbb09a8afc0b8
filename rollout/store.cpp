#include "rollout/store.h"

#include <sqlite3.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <SQLiteCpp/VariadicBind.h>
#include <nlohmann/json.hpp>

#include "rollout/columns.h"

namespace pipelined::rollout {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::unique_ptr<SQLite::Database> open_database(const std::string& path) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_FULLMUTEX);
    db->setBusyTimeout(200);
    db->exec("PRAGMA journal_mode=WAL");
    db->exec("PRAGMA synchronous=NORMAL");
    db->exec("PRAGMA foreign_keys=ON");
  } catch (const SQLite::Exception& e) {
    throw std::runtime_error("metrics database " + path + ": " + e.what());
  }
  const int newest = migrations().empty() ? 0 : migrations().back().version;
  int version = db->execAndGet("PRAGMA user_version").getInt();
  if (version > newest) {
    throw std::runtime_error("metrics database " + path + " has schema version " + std::to_string(version) + ", newer than this binary's " +
                             std::to_string(newest) + "; run the newer pipelined, or move the database aside");
  }
  for (const auto& m : migrations()) {
    if (m.version <= version) continue;
    try {
      SQLite::Transaction t(*db);
      db->exec(m.sql);
      db->exec("PRAGMA user_version = " + std::to_string(m.version));
      t.commit();
      version = m.version;
      spdlog::info("metrics database {}: applied migration {:03}_{}", path, m.version, m.name);
    } catch (const SQLite::Exception& e) {
      throw std::runtime_error("metrics database " + path + ": migration " + std::to_string(m.version) + "_" + m.name +
                               " failed: " + e.what());
    }
  }
  return db;
}

}  // namespace pipelined::rollout

namespace pipelined::rollout {

using nlohmann::json;

namespace {

Rollout read_rollout(SQLite::Statement& q) {
  Rollout r;
  r.id = q.getColumn(0).getInt64();
  r.pipeline = q.getColumn(1).getString();
  r.variants = json::parse(q.getColumn(2).getString()).get<std::map<std::string, std::string>>();
  r.percent_bp = q.getColumn(3).getInt();
  r.shadow_bp = q.getColumn(4).getInt();
  r.status = parse_status(q.getColumn(5).getString()).value_or(RolloutStatus::Paused);
  r.steps = json::parse(q.getColumn(6).getString()).get<std::vector<double>>();
  r.step_index = q.getColumn(7).getInt();
  r.dwell_ms = q.getColumn(8).getInt64();
  r.step_ms = q.getColumn(9).getInt64();
  r.created_ms = q.getColumn(10).getInt64();
  r.updated_ms = q.getColumn(11).getInt64();
  r.reason = q.getColumn(12).getString();
  r.paused_percent_bp = q.getColumn(13).getInt();
  return r;
}

constexpr const char* kRolloutColumns =
    "SELECT id, pipeline, variants, percent_bp, shadow_bp, status, steps, step_index, dwell_ms, step_ms, created_ms, "
    "updated_ms, reason, paused_percent_bp FROM rollouts ";

void bind_window(SQLite::Statement& q, int first, const std::string& pipeline, const Window& w) {
  q.bind(first, pipeline);
  q.bind(first + 1, w.since_ms);
  q.bind(first + 2, w.until_ms);
  q.bind(first + 3, w.rollout_id);
}

}  // namespace

MetricsStore::MetricsStore(const std::string& path) : db_(open_database(path)) {}

std::vector<Rollout> MetricsStore::latest_rollouts() {
  std::lock_guard lock(mu_);
  std::vector<Rollout> out;
  SQLite::Statement q(*db_, std::string(kRolloutColumns) + "WHERE id IN (SELECT MAX(id) FROM rollouts GROUP BY pipeline)");
  while (q.executeStep()) out.push_back(read_rollout(q));
  return out;
}

std::optional<Rollout> MetricsStore::rollout(std::int64_t id) {
  std::lock_guard lock(mu_);
  SQLite::Statement q(*db_, std::string(kRolloutColumns) + "WHERE id = ?");
  q.bind(1, id);
  if (!q.executeStep()) return std::nullopt;
  return read_rollout(q);
}

std::map<std::string, std::map<std::string, std::string>> MetricsStore::stable_overrides() {
  std::lock_guard lock(mu_);
  std::map<std::string, std::map<std::string, std::string>> out;
  SQLite::Statement o(*db_, "SELECT pipeline, stage, variant FROM stable_overrides");
  while (o.executeStep()) out[o.getColumn(0).getString()][o.getColumn(1).getString()] = o.getColumn(2).getString();
  return out;
}

void MetricsStore::save(Rollout& r, RolloutEvent event) {
  std::lock_guard lock(mu_);
  SQLite::Transaction t(*db_);
  if (r.id == 0) {
    SQLite::Statement ins(*db_,
                          "INSERT INTO rollouts (pipeline, variants, percent_bp, shadow_bp, status, steps, step_index, dwell_ms, "
                          "step_ms, created_ms, updated_ms, reason) VALUES (?, '{}', 0, 0, 'live', '[]', -1, 0, 0, ?, ?, '')");
    SQLite::bind(ins, r.pipeline, r.created_ms, r.created_ms);
    ins.exec();
    r.id = db_->getLastInsertRowid();
  }
  SQLite::Statement up(*db_,
                       "UPDATE rollouts SET variants = ?, percent_bp = ?, shadow_bp = ?, status = ?, steps = ?, step_index = ?, "
                       "dwell_ms = ?, step_ms = ?, updated_ms = ?, reason = ?, paused_percent_bp = ? WHERE id = ?");
  SQLite::bind(up, json(r.variants).dump(), r.percent_bp, r.shadow_bp, to_string(r.status), json(r.steps).dump(), r.step_index, r.dwell_ms,
               r.step_ms, r.updated_ms, r.reason, r.paused_percent_bp, r.id);
  up.exec();
  SQLite::Statement ev(*db_,
                       "INSERT INTO rollout_events (rollout_id, time_ms, actor, action, reason, percent_bp, details) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)");
  SQLite::bind(ev, r.id, event.time_ms, event.actor, event.action, event.reason, event.percent_bp,
               event.details.empty() ? std::string() : event.details.dump());
  ev.exec();
  t.commit();
}

void MetricsStore::save_overrides(const std::string& pipeline, const std::map<std::string, std::string>& variants) {
  std::lock_guard lock(mu_);
  SQLite::Transaction t(*db_);
  for (const auto& [stage, variant] : variants) {
    SQLite::Statement q(*db_, "INSERT OR REPLACE INTO stable_overrides (pipeline, stage, variant) VALUES (?, ?, ?)");
    q.bind(1, pipeline);
    q.bind(2, stage);
    q.bind(3, variant);
    q.exec();
  }
  t.commit();
}

std::vector<RolloutEvent> MetricsStore::events(std::int64_t rollout_id, int limit) {
  std::lock_guard lock(mu_);
  std::vector<RolloutEvent> out;
  SQLite::Statement q(*db_,
                      "SELECT rollout_id, time_ms, actor, action, reason, percent_bp, details FROM rollout_events "
                      "WHERE (? = 0 OR rollout_id = ?) ORDER BY id DESC LIMIT ?");
  q.bind(1, rollout_id);
  q.bind(2, rollout_id);
  q.bind(3, limit);
  while (q.executeStep()) {
    RolloutEvent e{q.getColumn(0).getInt64(),  q.getColumn(1).getInt64(),  q.getColumn(2).getString(),
                   q.getColumn(3).getString(), q.getColumn(4).getString(), q.getColumn(5).getInt()};
    const std::string details = q.getColumn(6).getString();
    if (!details.empty()) e.details = json::parse(details, nullptr, false);
    if (e.details.is_discarded()) e.details = json::object();
    out.push_back(std::move(e));
  }
  return out;
}

bool MetricsStore::last_run_unclean() {
  std::lock_guard lock(mu_);
  SQLite::Statement q(*db_, "SELECT COUNT(*) FROM daemon_runs WHERE stopped_ms IS NULL");
  const bool unclean = q.executeStep() && q.getColumn(0).getInt() > 0;
  db_->exec("UPDATE daemon_runs SET stopped_ms = -1 WHERE stopped_ms IS NULL");
  return unclean;
}

std::int64_t MetricsStore::begin_run() {
  std::lock_guard lock(mu_);
  SQLite::Statement ins(*db_, "INSERT INTO daemon_runs (started_ms) VALUES (?)");
  SQLite::bind(ins, now_ms());
  ins.exec();
  return db_->getLastInsertRowid();
}

void MetricsStore::end_run(std::int64_t run_id) {
  std::lock_guard lock(mu_);
  SQLite::Statement q(*db_, "UPDATE daemon_runs SET stopped_ms = ? WHERE id = ?");
  q.bind(1, now_ms());
  q.bind(2, run_id);
  q.exec();
}

void MetricsStore::delete_before(std::int64_t cutoff_ms) {
  std::lock_guard lock(mu_);
  db_->exec("DELETE FROM requests WHERE time_ms < " + std::to_string(cutoff_ms));  // stage_runs cascade
  db_->exec("DELETE FROM shadow_results WHERE time_ms < " + std::to_string(cutoff_ms));
}

std::map<std::string, ArmSamples> MetricsStore::arms(const std::string& pipeline, const Window& w, bool with_stages) {
  std::lock_guard lock(mu_);
  std::map<std::string, ArmSamples> arms;
  std::string figures;
  for (const auto& f : arm_figures()) figures += std::string(", ") + f.expression;
  SQLite::Statement q(*db_, "SELECT arm, outcome, latency_us, fell_back, error_class, own_failure, peak_bytes, time_ms" + figures +
                                " FROM requests WHERE pipeline = ? AND time_ms >= ? AND time_ms < ? AND rollout_id = ?");
  bind_window(q, 1, pipeline, w);
  while (q.executeStep()) {
    const std::string outcome = q.getColumn(1).getString();
    if (outcome == "cancelled") continue;  // the client left (server-sent events): says nothing about the arm
    ArmSamples& a = arms[q.getColumn(0).getString()];
    const bool user_ok = outcome == "ok" || outcome == "partial";
    if (outcome == "ok")
      ++a.ok;
    else if (outcome == "partial")
      ++a.partial;
    else
      ++a.errors;
    const std::string error_class = q.getColumn(4).getString();
    if (!error_class.empty()) ++a.user_error_classes[error_class];
    // own_failure is "<stage>: <class>"; the guardrails group by class.
    const std::string own = q.getColumn(5).getString();
    const auto colon = own.rfind(": ");
    const bool fell_back = q.getColumn(3).getInt() != 0;
    a.outcomes.add(q.getColumn(2).getInt64() / 1000.0, static_cast<double>(q.getColumn(6).getInt64()), own.empty(), user_ok, fell_back,
                   colon == std::string::npos ? own : own.substr(colon + 2));
    a.rows.push_back({q.getColumn(7).getInt64(), user_ok, own.empty(), fell_back});
    int i = 8;
    for (const auto& f : arm_figures()) a.figures[f.name].push_back(q.getColumn(i++).getDouble());
  }
  if (with_stages) {
    SQLite::Statement s(*db_,
                        "SELECT r.arm, s.stage, s.duration_us, s.status FROM stage_runs s JOIN requests r ON r.id = s.request "
                        "WHERE r.pipeline = ? AND r.time_ms >= ? AND r.time_ms < ? AND r.rollout_id = ? "
                        "AND s.status != 'skipped'");
    bind_window(s, 1, pipeline, w);
    while (s.executeStep()) {
      ArmSamples& a = arms[s.getColumn(0).getString()];
      const std::string stage = s.getColumn(1).getString();
      a.stage_ms[stage].push_back(s.getColumn(2).getInt64() / 1000.0);
      if (s.getColumn(3).getString() == "fell_back") ++a.stage_fallbacks[stage];
    }
  }
  return arms;
}

std::map<std::string, double> MetricsStore::arm_counts(const std::string& pipeline, const Window& w) {
  std::lock_guard lock(mu_);
  SQLite::Statement q(
      *db_, "SELECT arm, COUNT(*) FROM requests WHERE pipeline = ? AND time_ms >= ? AND time_ms < ? AND rollout_id = ? GROUP BY arm");
  bind_window(q, 1, pipeline, w);
  std::map<std::string, double> out;
  while (q.executeStep()) out[q.getColumn(0).getString()] = static_cast<double>(q.getColumn(1).getInt64());
  return out;
}

ShadowOutcomes MetricsStore::shadow(const std::string& pipeline, const Window& w) {
  std::lock_guard lock(mu_);
  SQLite::Statement q(*db_,
                      "SELECT COUNT(*), COALESCE(SUM(1 - matched), 0) FROM shadow_results "
                      "WHERE pipeline = ? AND time_ms >= ? AND time_ms < ? AND rollout_id = ?");
  bind_window(q, 1, pipeline, w);
  ShadowOutcomes s;
  if (q.executeStep()) {
    s.compared = static_cast<double>(q.getColumn(0).getInt64());
    s.mismatched = static_cast<double>(q.getColumn(1).getInt64());
  }
  return s;
}

}  // namespace pipelined::rollout

#include "rollout/columns.h"

#include <nlohmann/json.hpp>

namespace pipelined::rollout {

namespace {

template <auto Member>
SqlValue member(const RequestRecord& r) {
  using T = std::decay_t<decltype(r.*Member)>;
  if constexpr (std::is_same_v<T, std::string>)
    return r.*Member;
  else
    return static_cast<std::int64_t>(r.*Member);
}

SqlValue arm(const RequestRecord& r) { return std::string(to_string(r.arm)); }
SqlValue fell_back(const RequestRecord& r) { return std::int64_t{r.fell_back ? 1 : 0}; }
SqlValue variants(const RequestRecord& r) {
  nlohmann::json variants = nlohmann::json::object();
  for (const auto& s : r.stages) variants[s.stage] = s.variant;
  return variants.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

const std::vector<RequestColumn>& request_columns() {
  static const std::vector<RequestColumn> columns = {
      {"time_ms", member<&RequestRecord::time_ms>},
      {"request_id", member<&RequestRecord::request_id>},
      {"pipeline", member<&RequestRecord::pipeline>},
      {"rollout_id", member<&RequestRecord::rollout_id>},
      {"arm", arm},
      {"bucket", member<&RequestRecord::bucket>},
      {"http_status", member<&RequestRecord::http_status>},
      {"outcome", member<&RequestRecord::outcome>},
      {"latency_us", member<&RequestRecord::latency_us>},
      {"fell_back", fell_back},
      {"fallback_cause", member<&RequestRecord::fallback_cause>},
      {"error_class", member<&RequestRecord::error_class>},
      {"own_failure", member<&RequestRecord::own_failure>},
      {"peak_bytes", member<&RequestRecord::peak_bytes>},
      {"rss_bytes", member<&RequestRecord::rss_bytes>},
      {"variants", variants},
  };
  return columns;
}

std::string insert_sql(const char* table, const std::vector<const char*>& columns) {
  std::string names, marks;
  for (const char* c : columns) {
    names += (names.empty() ? "" : ", ") + std::string(c);
    marks += marks.empty() ? "?" : ", ?";
  }
  return std::string("INSERT INTO ") + table + " (" + names + ") VALUES (" + marks + ")";
}

std::string request_insert_sql() {
  std::vector<const char*> names;
  for (const auto& c : request_columns()) names.push_back(c.name);
  return insert_sql("requests", names);
}

const std::vector<const char*>& stage_run_columns() {
  static const std::vector<const char*> columns = {"request",     "stage",  "variant",  "plugin_version", "start_us",
                                                   "duration_us", "status", "attempts", "error_class",    "peak_bytes"};
  return columns;
}

std::vector<SqlValue> stage_run_values(std::int64_t request_id, const StageRunRecord& s) {
  return {request_id,    s.stage,     s.variant, s.plugin_version, s.start_us, s.duration_us, s.status, std::int64_t{s.attempts},
          s.error_class, s.peak_bytes};
}

const std::vector<const char*>& shadow_columns() {
  static const std::vector<const char*> columns = {"time_ms",          "request_id",        "pipeline",
                                                   "rollout_id",       "candidate_ok",      "matched",
                                                   "first_difference", "stable_latency_us", "candidate_latency_us"};
  return columns;
}

std::vector<SqlValue> shadow_values(const ShadowRecord& s) {
  return {s.time_ms,
          s.request_id,
          s.pipeline,
          s.rollout_id,
          std::int64_t{s.candidate_ok ? 1 : 0},
          std::int64_t{s.matched ? 1 : 0},
          s.first_difference,
          s.stable_latency_us,
          s.candidate_latency_us};
}

const std::vector<ArmFigure>& arm_figures() {
  static const std::vector<ArmFigure> figures = {
      {"latency_ms", "latency_us / 1000.0", false},
      {"peak_bytes", "peak_bytes", false},
      {"rss_bytes", "rss_bytes", true},
  };
  return figures;
}

}  // namespace pipelined::rollout

#include "rollout/columns.h"

#include <nlohmann/json.hpp>

namespace pipelined::rollout {

namespace {

template <auto Member>
void bind_member(SQLite::Statement& q, int i, const RequestRecord& r) {
  q.bind(i, r.*Member);
}

void bind_arm(SQLite::Statement& q, int i, const RequestRecord& r) { q.bind(i, to_string(r.arm)); }
void bind_fell_back(SQLite::Statement& q, int i, const RequestRecord& r) { q.bind(i, r.fell_back ? 1 : 0); }
void bind_variants(SQLite::Statement& q, int i, const RequestRecord& r) {
  nlohmann::json variants = nlohmann::json::object();
  for (const auto& s : r.stages) variants[s.stage] = s.variant;
  q.bind(i, variants.dump());
}

}  // namespace

const std::vector<RequestColumn>& request_columns() {
  static const std::vector<RequestColumn> columns = {
      {"time_ms", bind_member<&RequestRecord::time_ms>},
      {"request_id", bind_member<&RequestRecord::request_id>},
      {"pipeline", bind_member<&RequestRecord::pipeline>},
      {"rollout_id", bind_member<&RequestRecord::rollout_id>},
      {"arm", bind_arm},
      {"bucket", bind_member<&RequestRecord::bucket>},
      {"http_status", bind_member<&RequestRecord::http_status>},
      {"outcome", bind_member<&RequestRecord::outcome>},
      {"latency_us", bind_member<&RequestRecord::latency_us>},
      {"fell_back", bind_fell_back},
      {"fallback_cause", bind_member<&RequestRecord::fallback_cause>},
      {"error_class", bind_member<&RequestRecord::error_class>},
      {"own_failure", bind_member<&RequestRecord::own_failure>},
      {"peak_bytes", bind_member<&RequestRecord::peak_bytes>},
      {"rss_bytes", bind_member<&RequestRecord::rss_bytes>},
      {"variants", bind_variants},
  };
  return columns;
}

std::string request_insert_sql() {
  std::string names, marks;
  for (const auto& c : request_columns()) {
    names += (names.empty() ? "" : ", ") + std::string(c.name);
    marks += marks.empty() ? "?" : ", ?";
  }
  return "INSERT INTO requests (" + names + ") VALUES (" + marks + ")";
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

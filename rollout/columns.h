// The metric columns of a request row, each declared once. A new per-request metric is: a
// migration adding the column, one line in kRequestColumns (how a RequestRecord fills it), and,
// if the report shows it per arm, one line in kArmFigures. The insert, the report's SELECT and
// the report's JSON members are generated from these lists (docs/rollout.md, "Adding a metric").
#pragma once

#include <string>
#include <vector>

#include "rollout/database.h"
#include "rollout/records.h"

namespace pipelined::rollout {

struct RequestColumn {
  const char* name;
  SqlValue (*value)(const RequestRecord& record);
};
const std::vector<RequestColumn>& request_columns();

// "INSERT INTO requests (a, b, ...) VALUES (?, ?, ...)" for request_columns().
std::string request_insert_sql();

// The other tables the writer fills: column names, and the values of one row in their order.
// stage_runs' first column is the request's id.
const std::vector<const char*>& stage_run_columns();
std::vector<SqlValue> stage_run_values(std::int64_t request_id, const StageRunRecord& s);
const std::vector<const char*>& shadow_columns();
std::vector<SqlValue> shadow_values(const ShadowRecord& s);
// "INSERT INTO table (a, b) VALUES (?, ?)".
std::string insert_sql(const char* table, const std::vector<const char*>& columns);

// A per-request figure the report summarises per arm with quantiles.
struct ArmFigure {
  const char* name;        // JSON member of the arm: "latency_ms"
  const char* expression;  // SQL over the requests table: "latency_us / 1000.0"
  bool with_max;           // also report the maximum
};
const std::vector<ArmFigure>& arm_figures();

}  // namespace pipelined::rollout

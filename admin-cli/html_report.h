// pipectl report --html: the admin report JSON (GET /admin/report) as one self-contained HTML page.
// Pure function; the charts are inline SVG drawn here, the page loads nothing and runs no script,
// so it can be mailed or opened from a ticket as it is.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace pipectl {

// Per pipeline: the summary table, then charts per arm of the latency distribution and median
// over time, the candidate share over time with the rollout's events, candidate (own) success,
// user success and fallback rate over time, per-stage time, and memory (quantiles, median over
// time); then the events with the guardrail figures. Every chart is an
// <svg class="chart" data-chart="NAME">; its drawn data (bars, lines, points) carry class "d", so
// a test can tell a chart with data from an empty frame.
std::string html_report(const nlohmann::json& report);

}  // namespace pipectl

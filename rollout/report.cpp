#include "rollout/report.h"

#include <algorithm>
#include <cmath>

#include "rollout/columns.h"

namespace pipelined::rollout {

using nlohmann::json;

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

json verdict_json(const Verdict& v) {
  json checks = json::array();
  for (const auto& c : v.checks)
    checks.push_back({{"rule", c.rule},
                      {"figure", c.figure},
                      {"estimate", c.estimate},
                      {"low", c.low},
                      {"high", c.high},
                      {"threshold", c.threshold},
                      {"unit", c.unit},
                      {"alpha", c.alpha},
                      {"result", to_string(c.result)},
                      {"text", c.text},
                      {"needed_to_keep", c.needed_to_keep},
                      {"more_samples", std::isfinite(c.more_samples) ? json(std::ceil(c.more_samples)) : json(nullptr)}});
  return {{"decision", to_string(v.decision)},
          {"reason", v.reason},
          {"n_stable", v.n_stable},
          {"n_candidate", v.n_candidate},
          {"checks", checks}};
}

namespace {

json arm_json(const ArmSamples& a) {
  const ArmOutcomes& o = a.outcomes;
  const double n = std::max(o.requests, 1.0);
  json stages = json::object();
  for (const auto& [stage, ms] : a.stage_ms) {
    const auto fb = a.stage_fallbacks.find(stage);
    const long fallbacks = fb == a.stage_fallbacks.end() ? 0 : fb->second;
    stages[stage] = {{"p50_ms", quantile(ms, 0.5)},
                     {"p95_ms", quantile(ms, 0.95)},
                     {"runs", ms.size()},
                     {"fallbacks", fallbacks},
                     {"fallback_rate", static_cast<double>(fallbacks) / static_cast<double>(ms.size())}};
  }
  json out = {{"requests", o.requests},
              {"success_rate", (o.requests - o.user_failures) / n},     // what users got
              {"own_success_rate", (o.requests - o.own_failures) / n},  // no attempt of the arm's variants failed
              {"ok", a.ok},
              {"partial", a.partial},
              {"errors", a.errors},
              {"fallbacks", o.fallbacks},
              {"fallback_rate", o.fallbacks / n},
              {"errors_by_class", a.user_error_classes},
              {"own_failures_by_class", o.failure_classes},
              {"stages", stages}};
  for (const auto& f : arm_figures()) {
    const auto it = a.figures.find(f.name);
    const std::vector<double> none;
    const auto& values = it == a.figures.end() ? none : it->second;
    json q = {{"p50", quantile(values, 0.5)}, {"p95", quantile(values, 0.95)}, {"p99", quantile(values, 0.99)}};
    if (f.with_max) q["max"] = values.empty() ? 0.0 : *std::max_element(values.begin(), values.end());
    out[f.name] = q;
  }
  return out;
}

const std::vector<double>& figure(const ArmSamples& a, const char* name) {
  static const std::vector<double> none;
  const auto it = a.figures.find(name);
  return it == a.figures.end() ? none : it->second;
}

// Each arm's latency histogram over the same log-spaced edges (the arms' bars line up): latencies of
// a rollout span orders of magnitude when a candidate is much faster or falls back.
void add_latency_histograms(json& arms, const std::map<std::string, ArmSamples>& in) {
  constexpr int kBins = 24;
  double lo = INFINITY, hi = 0;
  for (const auto& [arm, a] : in)
    for (const double v : figure(a, "latency_ms")) lo = std::min(lo, v), hi = std::max(hi, v);
  lo = std::max(std::isfinite(lo) ? lo : 1.0, 0.001);
  hi = std::max(hi, lo * 1.01);
  json edges = json::array();
  for (int i = 0; i <= kBins; ++i) edges.push_back(lo * std::pow(hi / lo, static_cast<double>(i) / kBins));
  for (const auto& [arm, a] : in) {
    std::vector<long> counts(kBins, 0);
    for (const double v : figure(a, "latency_ms")) {
      const double at = v <= lo ? 0.0 : std::log(v / lo) / std::log(hi / lo) * kBins;
      ++counts[std::min(kBins - 1, static_cast<int>(at))];
    }
    arms[arm]["latency_histogram"] = {{"edges_ms", edges}, {"counts", counts}};
  }
}

// The rows in equal time buckets from the first request to the last, per arm: what the report's
// charts draw over time. Column arrays, one entry per bucket; a rate is null in a bucket without
// requests of that arm.
json timeline(const std::map<std::string, ArmSamples>& in) {
  constexpr std::int64_t kMaxBuckets = 40;
  std::int64_t first = INT64_MAX, last = INT64_MIN;
  for (const auto& [arm, a] : in)
    for (const auto& r : a.rows) first = std::min(first, r.time_ms), last = std::max(last, r.time_ms);
  json out = {{"bucket_ms", 0}, {"start_ms", json::array()}, {"arms", json::object()}, {"candidate_share", json::array()}};
  if (first > last) return out;
  const std::int64_t bucket = (last - first) / kMaxBuckets + 1;
  const auto n = static_cast<std::size_t>((last - first) / bucket + 1);
  out["bucket_ms"] = bucket;
  for (std::size_t b = 0; b < n; ++b) out["start_ms"].push_back(first + static_cast<std::int64_t>(b) * bucket);
  auto rate = [](long part, long whole) {
    return whole > 0 ? json(static_cast<double>(part) / static_cast<double>(whole)) : json(nullptr);
  };
  std::map<std::string, std::vector<long>> requests;
  for (const auto& [arm, a] : in) {
    std::vector<long> n_req(n, 0), user_ok(n, 0), own_ok(n, 0), fell_back(n, 0);
    std::vector<std::vector<double>> latency(n), peak(n);
    const auto& latency_ms = figure(a, "latency_ms");
    const auto& peak_bytes = figure(a, "peak_bytes");
    for (std::size_t i = 0; i < a.rows.size(); ++i) {
      const ArmRow& r = a.rows[i];
      const auto b = static_cast<std::size_t>((r.time_ms - first) / bucket);
      ++n_req[b], user_ok[b] += r.user_ok, own_ok[b] += r.own_ok, fell_back[b] += r.fell_back;
      if (i < latency_ms.size()) latency[b].push_back(latency_ms[i]);
      if (i < peak_bytes.size()) peak[b].push_back(peak_bytes[i]);
    }
    json series = {{"requests", n_req},
                   {"success_rate", json::array()},
                   {"own_success_rate", json::array()},
                   {"fallback_rate", json::array()},
                   {"latency_p50_ms", json::array()},
                   {"peak_bytes_p50", json::array()}};
    for (std::size_t b = 0; b < n; ++b) {
      series["success_rate"].push_back(rate(user_ok[b], n_req[b]));
      series["own_success_rate"].push_back(rate(own_ok[b], n_req[b]));
      series["fallback_rate"].push_back(rate(fell_back[b], n_req[b]));
      series["latency_p50_ms"].push_back(n_req[b] > 0 ? json(quantile(latency[b], 0.5)) : json(nullptr));
      series["peak_bytes_p50"].push_back(n_req[b] > 0 ? json(quantile(peak[b], 0.5)) : json(nullptr));
    }
    out["arms"][arm] = series;
    requests[arm] = n_req;
  }
  for (std::size_t b = 0; b < n; ++b) {
    const long candidate = requests.count("candidate") ? requests["candidate"][b] : 0;
    const long stable = requests.count("stable") ? requests["stable"][b] : 0;
    out["candidate_share"].push_back(rate(candidate, candidate + stable));
  }
  return out;
}

}  // namespace

json pipeline_report(const PipelineReportInput& in) {
  json arms = json::object();
  for (const auto& [arm, a] : in.arms) arms[arm] = arm_json(a);
  add_latency_histograms(arms, in.arms);
  json entry = {{"rollout", in.rollout ? in.rollout->to_json() : json(nullptr)},
                {"window", {{"since_ms", in.window.since_ms}, {"until_ms", in.window.until_ms}}},
                {"arms", arms},
                {"shadow",
                 {{"compared", in.shadow.compared},
                  {"mismatched", in.shadow.mismatched},
                  {"mismatch_rate", in.shadow.compared > 0 ? in.shadow.mismatched / in.shadow.compared : 0.0}}},
                {"timeline", timeline(in.arms)},
                {"verdict", in.verdict.reason},
                {"decision", verdict_json(in.verdict)}};
  for (const auto& c : in.verdict.checks) {
    if (c.rule == "time_saved") entry["time_saved"] = {{"estimate", c.estimate}, {"low", c.low}, {"high", c.high}, {"alpha", c.alpha}};
    if (c.rule == "memory") entry["memory_increase"] = {{"estimate", c.estimate}, {"low", c.low}, {"high", c.high}, {"alpha", c.alpha}};
  }
  const auto s = in.arms.find("stable"), k = in.arms.find("candidate");
  if (s != in.arms.end() && k != in.arms.end() && entry.contains("time_saved")) {
    const double base = quantile(s->second.figures.at("latency_ms"), 0.5);
    entry["time_saved"]["p50"] = base > 0 ? (base - quantile(k->second.figures.at("latency_ms"), 0.5)) / base : 0.0;
  }
  json decisions = json::array();
  for (const auto& e : in.events) decisions.push_back(e.to_json());
  entry["events"] = decisions;
  return entry;
}

}  // namespace pipelined::rollout

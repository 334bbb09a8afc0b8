#include "rollout/report.h"

#include <algorithm>

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

}  // namespace

json pipeline_report(const PipelineReportInput& in) {
  json arms = json::object();
  for (const auto& [arm, a] : in.arms) arms[arm] = arm_json(a);
  json entry = {{"rollout", in.rollout ? in.rollout->to_json() : json(nullptr)},
                {"window", {{"since_ms", in.window.since_ms}, {"until_ms", in.window.until_ms}}},
                {"arms", arms},
                {"shadow",
                 {{"compared", in.shadow.compared},
                  {"mismatched", in.shadow.mismatched},
                  {"mismatch_rate", in.shadow.compared > 0 ? in.shadow.mismatched / in.shadow.compared : 0.0}}},
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

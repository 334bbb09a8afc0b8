#include "rollout/report.h"

#include <algorithm>
#include <random>
#include <sstream>

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

std::map<std::string, ArmSamples> load_arms(SQLite::Database& db, const std::string& pipeline, std::int64_t since_ms,
                                            std::int64_t rollout_id, bool with_stages) {
  std::map<std::string, ArmSamples> arms;
  SQLite::Statement q(db,
                      "SELECT arm, outcome, latency_us, fell_back, error_class, peak_bytes, rss_bytes FROM requests "
                      "WHERE pipeline = ? AND time_ms >= ? AND (? = 0 OR rollout_id = ?)");
  q.bind(1, pipeline);
  q.bind(2, since_ms);
  q.bind(3, rollout_id);
  q.bind(4, rollout_id);
  while (q.executeStep()) {
    ArmSamples& a = arms[q.getColumn(0).getString()];
    const std::string outcome = q.getColumn(1).getString();
    ++a.requests;
    if (outcome == "ok") ++a.ok;
    else if (outcome == "partial") ++a.partial;
    else ++a.errors;
    a.latency_ms.push_back(q.getColumn(2).getInt64() / 1000.0);
    if (q.getColumn(3).getInt()) ++a.fallbacks;
    const std::string error_class = q.getColumn(4).getString();
    if (!error_class.empty()) ++a.error_classes[error_class];
    a.peak_bytes.push_back(static_cast<double>(q.getColumn(5).getInt64()));
    a.rss_bytes.push_back(static_cast<double>(q.getColumn(6).getInt64()));
  }
  if (with_stages) {
    SQLite::Statement s(db,
                        "SELECT r.arm, s.stage, s.duration_us FROM stage_runs s JOIN requests r ON r.id = s.request "
                        "WHERE r.pipeline = ? AND r.time_ms >= ? AND (? = 0 OR r.rollout_id = ?) AND s.status != 'skipped'");
    s.bind(1, pipeline);
    s.bind(2, since_ms);
    s.bind(3, rollout_id);
    s.bind(4, rollout_id);
    while (s.executeStep()) arms[s.getColumn(0).getString()].stage_ms[s.getColumn(1).getString()].push_back(s.getColumn(2).getInt64() / 1000.0);
  }
  return arms;
}

ShadowSamples load_shadow(SQLite::Database& db, const std::string& pipeline, std::int64_t since_ms, std::int64_t rollout_id) {
  SQLite::Statement q(db,
                      "SELECT COUNT(*), COALESCE(SUM(1 - matched), 0) FROM shadow_results "
                      "WHERE pipeline = ? AND time_ms >= ? AND (? = 0 OR rollout_id = ?)");
  q.bind(1, pipeline);
  q.bind(2, since_ms);
  q.bind(3, rollout_id);
  q.bind(4, rollout_id);
  ShadowSamples s;
  if (q.executeStep()) {
    s.compared = q.getColumn(0).getInt64();
    s.mismatched = q.getColumn(1).getInt64();
  }
  return s;
}

Saving time_saved(const std::vector<double>& stable, const std::vector<double>& candidate, double q, int resamples) {
  Saving out;
  if (stable.empty() || candidate.empty()) return out;
  auto saving = [q](const std::vector<double>& s, const std::vector<double>& c) {
    const double base = quantile(s, q);
    return base > 0 ? (base - quantile(c, q)) / base : 0.0;
  };
  out.value = saving(stable, candidate);
  std::mt19937_64 rng(42);
  std::vector<double> draws;
  draws.reserve(static_cast<std::size_t>(resamples));
  std::vector<double> s(stable.size()), c(candidate.size());
  std::uniform_int_distribution<std::size_t> pick_s(0, stable.size() - 1), pick_c(0, candidate.size() - 1);
  for (int i = 0; i < resamples; ++i) {
    for (auto& x : s) x = stable[pick_s(rng)];
    for (auto& x : c) x = candidate[pick_c(rng)];
    draws.push_back(saving(s, c));
  }
  out.low = quantile(draws, 0.025);
  out.high = quantile(draws, 0.975);
  return out;
}

std::string Verdict::text() const {
  if (!enough) return "not enough data";
  if (failures.empty()) return "keep: meets every criterion";
  std::string out = "roll back:";
  for (const auto& f : failures) out += " " + f + ";";
  out.pop_back();
  return out;
}

namespace {
std::string percent(double v) {
  std::ostringstream o;
  o.precision(1);
  o << std::fixed << v * 100 << " %";
  return o.str();
}
}  // namespace

Verdict judge(const config::RolloutConfig& rules, const ArmSamples& stable, const ArmSamples& candidate, const ShadowSamples& shadow) {
  Verdict v;
  v.enough = stable.requests >= rules.min_samples_per_arm && candidate.requests >= rules.min_samples_per_arm;
  if (shadow.compared >= rules.min_samples_per_arm && shadow.mismatch_rate() > rules.max_shadow_mismatch) {
    v.enough = true;  // shadow mismatches alone are enough to decide
    v.failures.push_back("shadow mismatch " + percent(shadow.mismatch_rate()) + " > " + percent(rules.max_shadow_mismatch));
  }
  if (stable.requests < rules.min_samples_per_arm || candidate.requests < rules.min_samples_per_arm) return v;
  if (candidate.success_rate() < rules.min_success_rate)
    v.failures.push_back("success " + percent(candidate.success_rate()) + " < " + percent(rules.min_success_rate));
  const double base = quantile(stable.latency_ms, 0.5);
  const double saved = base > 0 ? (base - quantile(candidate.latency_ms, 0.5)) / base : 0;
  if (saved < rules.min_time_saved) v.failures.push_back("time saved " + percent(saved) + " < " + percent(rules.min_time_saved));
  const double stable_mem = quantile(stable.peak_bytes, 0.5);
  if (stable_mem > 0) {
    const double increase = quantile(candidate.peak_bytes, 0.5) / stable_mem - 1;
    if (increase > rules.max_memory_increase)
      v.failures.push_back("memory +" + percent(increase) + " > +" + percent(rules.max_memory_increase));
  }
  for (const auto& [cls, n] : candidate.error_classes) {
    const double share_c = static_cast<double>(n) / candidate.requests;
    const auto s = stable.error_classes.find(cls);
    const double share_s = s == stable.error_classes.end() ? 0 : static_cast<double>(s->second) / stable.requests;
    if (share_c - share_s > rules.max_error_class_spike)
      v.failures.push_back("error class '" + cls + "' on " + percent(share_c) + " of candidate requests (stable " + percent(share_s) + ")");
  }
  return v;
}

json build_report(SQLite::Database& db, const config::Config& config, std::int64_t since_ms, const std::string& only) {
  json pipelines = json::object();
  for (const auto& p : config.pipelines) {
    if (!only.empty() && p.name != only) continue;
    auto arms = load_arms(db, p.name, since_ms, 0, true);
    const ShadowSamples shadow = load_shadow(db, p.name, since_ms, 0);
    json arms_json = json::object();
    for (const auto& [arm, a] : arms) {
      json stages = json::object();
      for (const auto& [stage, ms] : a.stage_ms) stages[stage] = {{"p50_ms", quantile(ms, 0.5)}, {"p95_ms", quantile(ms, 0.95)}, {"runs", ms.size()}};
      arms_json[arm] = {{"requests", a.requests},
                        {"success_rate", a.success_rate()},
                        {"ok", a.ok},
                        {"partial", a.partial},
                        {"errors", a.errors},
                        {"fallbacks", a.fallbacks},
                        {"errors_by_class", a.error_classes},
                        {"latency_ms", {{"p50", quantile(a.latency_ms, 0.5)}, {"p95", quantile(a.latency_ms, 0.95)}, {"p99", quantile(a.latency_ms, 0.99)}}},
                        {"peak_bytes", {{"p50", quantile(a.peak_bytes, 0.5)}, {"p95", quantile(a.peak_bytes, 0.95)}}},
                        {"rss_bytes", {{"p50", quantile(a.rss_bytes, 0.5)}, {"max", a.rss_bytes.empty() ? 0 : *std::max_element(a.rss_bytes.begin(), a.rss_bytes.end())}}},
                        {"stages", stages}};
    }
    json entry = {{"arms", arms_json}, {"shadow", {{"compared", shadow.compared}, {"mismatched", shadow.mismatched}, {"mismatch_rate", shadow.mismatch_rate()}}}};
    const ArmSamples none;
    const ArmSamples& stable = arms.count("stable") ? arms["stable"] : none;
    const ArmSamples& candidate = arms.count("candidate") ? arms["candidate"] : none;
    if (!stable.latency_ms.empty() && !candidate.latency_ms.empty()) {
      const Saving p50 = time_saved(stable.latency_ms, candidate.latency_ms, 0.5);
      const Saving p95 = time_saved(stable.latency_ms, candidate.latency_ms, 0.95);
      entry["time_saved"] = {{"p50", p50.value}, {"p50_ci95", {p50.low, p50.high}}, {"p95", p95.value}, {"p95_ci95", {p95.low, p95.high}}};
      const double stable_mem = quantile(stable.peak_bytes, 0.5);
      entry["memory_increase"] = stable_mem > 0 ? quantile(candidate.peak_bytes, 0.5) / stable_mem - 1 : 0.0;
    }
    entry["verdict"] = judge(config.rollout, stable, candidate, shadow).text();
    pipelines[p.name] = entry;
  }
  return {{"since_ms", since_ms}, {"pipelines", pipelines}};
}

}  // namespace pipelined::rollout

#include "rollout/guardrails.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/percent.h"

namespace pipelined::rollout {

using common::format_percent;
namespace seq = sequential;

const char* to_string(CheckResult r) {
  switch (r) {
    case CheckResult::Holds:
      return "holds";
    case CheckResult::Fails:
      return "fails";
    default:
      return "unsure";
  }
}

const char* to_string(Decision d) {
  switch (d) {
    case Decision::Keep:
      return "keep";
    case Decision::RollBack:
      return "roll_back";
    case Decision::Pause:
      return "pause";
    default:
      return "collecting";
  }
}

void ArmOutcomes::add(double latency_ms, double peak_bytes, bool own_ok, bool user_ok, bool fell_back, const std::string& failure_class) {
  requests += 1;
  if (!own_ok) {
    own_failures += 1;
    failure_classes[failure_class.empty() ? "unknown" : failure_class] += 1;
  }
  if (!user_ok) user_failures += 1;
  if (fell_back) fallbacks += 1;
  log_latency.add(std::log(std::max(latency_ms, 1e-3)));
  log_peak.add(std::log1p(std::max(peak_bytes, 0.0)));
  peak.add(std::max(peak_bytes, 0.0));
}

namespace {

// How the total alpha is split. The union bound keeps the chance that any check fires wrongly at
// most `alpha`. Failure increase gets the largest share: a 1 % -> 2 % rise is the hardest effect
// the issue asks to detect; the shares are measured in bench/decision_sim (docs/benchmarks.md).
struct Budget {
  double time_saved, own_success, failure_increase, memory, error_class, shadow;
};
Budget budget_for(double alpha) { return {alpha * 0.25, alpha * 0.15, alpha * 0.35, alpha * 0.05, alpha * 0.10, alpha * 0.10}; }

// Sample sizes at which each boundary is tightest: near where the effects become visible.
constexpr double kTuneLatency = 150, kTuneSuccess = 100, kTuneProportion = 1000, kTuneFailureIncrease = 4000;

std::string interval_text(double estimate, double low, double high) {
  return format_percent(estimate) + " [" + format_percent(low) + ", " + format_percent(high) + "]";
}

std::string mib_text(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%+.1f MiB", bytes / (1 << 20));
  return text;
}

std::string mib_interval_text(const seq::Interval& bytes) {
  return mib_text(bytes.estimate) + " [" + mib_text(bytes.low) + ", " + mib_text(bytes.high) + "]";
}

// Latency: the log of candidate/stable geometric-mean latency, shown as time saved = 1 - ratio.
Check time_saved(const Criteria& c, const ArmOutcomes& s, const ArmOutcomes& k, double alpha) {
  Check out{"time_saved", "geometric-mean latency, candidate vs stable", 0, 0, 0, c.min_time_saved, alpha};
  out.needed_to_keep = true;
  const seq::Interval d = seq::mean_difference(s.log_latency, k.log_latency, alpha, kTuneLatency);
  out.estimate = 1 - std::exp(d.estimate);
  out.low = 1 - std::exp(d.high);
  out.high = 1 - std::exp(d.low);
  if (!d.valid) return out;
  const double bound = std::log(1 - c.min_time_saved);  // the criterion on the log-ratio scale
  if (d.low > bound)
    out.result = CheckResult::Fails;
  else if (d.high < bound)
    out.result = CheckResult::Holds;
  else {
    const double sd = std::sqrt((s.log_latency.variance() + k.log_latency.variance()) / 2);
    const double need = seq::samples_needed(sd, std::abs(d.estimate - bound), alpha, kTuneLatency, true);
    out.more_samples = std::max(0.0, need - std::min(s.requests, k.requests));
  }
  out.text = "time saved " + interval_text(out.estimate, out.low, out.high) + (out.result == CheckResult::Fails ? " < " : " vs ") +
             format_percent(c.min_time_saved);
  return out;
}

Check own_success(const Criteria& c, const ArmOutcomes& k, double alpha) {
  Check out{"own_success", "candidate requests with no failed candidate attempt", 0, 0, 0, c.min_success_rate, alpha};
  out.needed_to_keep = true;
  const seq::Interval p = seq::proportion_test(k.requests - k.own_failures, k.requests, c.min_success_rate, alpha, kTuneSuccess);
  out.estimate = p.estimate, out.low = p.low, out.high = p.high;
  if (!p.valid) return out;
  if (p.high < c.min_success_rate)
    out.result = CheckResult::Fails;
  else if (p.low >= c.min_success_rate)
    out.result = CheckResult::Holds;
  else {
    const double q = c.min_success_rate;
    const double need = seq::samples_needed(std::sqrt(q * (1 - q)), std::abs(p.estimate - c.min_success_rate), alpha, kTuneSuccess, false);
    out.more_samples = std::max(0.0, need - k.requests);
  }
  out.text = "candidate success " + interval_text(out.estimate, out.low, out.high) + (out.result == CheckResult::Fails ? " < " : " vs ") +
             format_percent(c.min_success_rate);
  return out;
}

// Kayenta-style critical metric: a candidate failing this often is not worth the data.
Check critical_success(const Criteria& c, const ArmOutcomes& k) {
  Check out{"critical_success", "candidate success, fast path", 0, 0, 0, c.hard_min_success_rate, 0};
  out.estimate = out.low = out.high = k.requests > 0 ? 1 - k.own_failures / k.requests : 1;
  out.result = k.requests >= c.hard_min_requests && out.estimate < c.hard_min_success_rate ? CheckResult::Fails : CheckResult::Unsure;
  out.text = "candidate success " + format_percent(out.estimate) + " of " + std::to_string(static_cast<long>(k.requests)) + " requests" +
             (out.result == CheckResult::Fails ? " < " : " vs ") + format_percent(c.hard_min_success_rate) + " (critical)";
  return out;
}

// Critical too: a candidate whose runner process crashes (isolation: process) is a serious error
// whatever its rate; a crash that is not the candidate's fault (an OOM kill from elsewhere) is
// rare enough that a few are allowed.
Check critical_crashes(const Criteria& c, const ArmOutcomes& k) {
  Check out{
      "critical_crashes", "candidate requests failed by a crash of its runner", 0, 0, 0, static_cast<double>(c.max_crashed_requests), 0};
  out.unit = "requests";
  const auto it = k.failure_classes.find("crashed");
  out.estimate = out.low = out.high = it == k.failure_classes.end() ? 0 : it->second;
  out.result = out.estimate >= c.max_crashed_requests ? CheckResult::Fails : CheckResult::Unsure;
  out.text = std::to_string(static_cast<long>(out.estimate)) + " candidate requests failed by a runner crash" +
             (out.result == CheckResult::Fails ? " >= " : " vs ") + std::to_string(c.max_crashed_requests) + " (critical)";
  return out;
}

// Rollback-only: the candidate's own failures confidently above stable's.
Check failure_increase(const ArmOutcomes& s, const ArmOutcomes& k, double alpha) {
  Check out{"failure_increase", "own failure rate, candidate minus stable", 0, 0, 0, 0, alpha};
  const seq::Interval d =
      seq::proportion_difference(s.own_failures, s.requests, k.own_failures, k.requests, alpha, kTuneFailureIncrease, true);
  out.estimate = d.estimate, out.low = d.low, out.high = d.high;
  if (d.valid && d.low > 0) out.result = CheckResult::Fails;
  out.text = "failure rate +" + interval_text(out.estimate, out.low, out.high) + " over stable";
  return out;
}

// Memory fails only when the candidate's request peak is confidently above stable's both by more
// than max_memory_increase and by more than min_memory_increase_bytes (each interval at the check's
// alpha: rejecting both nulls at alpha is a level-alpha test of their union); it holds when either
// is confidently within its bound.
Check memory(const Criteria& c, const ArmOutcomes& s, const ArmOutcomes& k, double alpha) {
  Check out{"memory", "request peak heap, candidate vs stable: geometric-mean ratio and mean bytes", 0, 0, 0, c.max_memory_increase, alpha};
  out.needed_to_keep = true;
  // Without heap figures (an allocator that does not account) there is nothing to judge.
  if (s.log_peak.mean < std::log(1024.0) || k.log_peak.mean < std::log(1024.0)) {
    out.result = CheckResult::Holds;
    out.text = "memory: no per-request heap figures";
    return out;
  }
  const seq::Interval d = seq::mean_difference(s.log_peak, k.log_peak, alpha, kTuneLatency);
  const seq::Interval bytes = seq::mean_difference(s.peak, k.peak, alpha, kTuneLatency);
  out.estimate = std::exp(d.estimate) - 1, out.low = std::exp(d.low) - 1, out.high = std::exp(d.high) - 1;
  if (!d.valid || !bytes.valid) return out;
  const double bound = std::log1p(c.max_memory_increase);
  const double floor = c.min_memory_increase_bytes;
  if (d.low > bound && bytes.low > floor)
    out.result = CheckResult::Fails;
  else if (d.high < bound || bytes.high < floor)
    out.result = CheckResult::Holds;
  else {
    // Samples until the nearer of the two bounds is resolved.
    const double n = std::min(s.requests, k.requests);
    const double sd = std::sqrt((s.log_peak.variance() + k.log_peak.variance()) / 2);
    const double sd_bytes = std::sqrt((s.peak.variance() + k.peak.variance()) / 2);
    out.more_samples = std::max(0.0, std::min(seq::samples_needed(sd, std::abs(d.estimate - bound), alpha, kTuneLatency, true),
                                              seq::samples_needed(sd_bytes, std::abs(bytes.estimate - floor), alpha, kTuneLatency, true)) -
                                         n);
  }
  out.text = "memory +" + interval_text(out.estimate, out.low, out.high) + " (" + mib_interval_text(bytes) + " per request)" +
             (out.result == CheckResult::Fails ? " > +" : " vs +") + format_percent(c.max_memory_increase) + " and " + mib_text(floor);
  return out;
}

std::vector<Check> error_classes(const Criteria& c, const ArmOutcomes& s, const ArmOutcomes& k, double alpha) {
  std::vector<Check> out;
  if (k.failure_classes.empty()) return out;
  const double each = alpha / static_cast<double>(k.failure_classes.size());
  for (const auto& [cls, n] : k.failure_classes) {
    const auto it = s.failure_classes.find(cls);
    const double sn = it == s.failure_classes.end() ? 0 : it->second;
    const seq::Interval d = seq::proportion_difference(sn, s.requests, n, k.requests, each, kTuneProportion);
    Check ch{"error_class:" + cls,
             "share of requests failing with '" + cls + "', candidate minus stable",
             d.estimate,
             d.low,
             d.high,
             c.max_error_class_spike,
             each};
    if (d.valid && d.low > c.max_error_class_spike) ch.result = CheckResult::Fails;
    ch.text = "error class '" + cls + "' +" + interval_text(d.estimate, d.low, d.high) + " of candidate requests over stable" +
              (ch.result == CheckResult::Fails ? " > " : " vs ") + format_percent(c.max_error_class_spike);
    out.push_back(std::move(ch));
  }
  return out;
}

Check shadow_mismatch(const Criteria& c, const ShadowOutcomes& sh, double alpha) {
  Check out{"shadow_mismatch", "shadow comparisons whose outputs differ", 0, 0, 0, c.max_shadow_mismatch, alpha};
  const seq::Interval p = seq::proportion(sh.mismatched, sh.compared, alpha, kTuneProportion);
  out.estimate = p.estimate, out.low = p.low, out.high = p.high;
  if (p.valid && sh.compared >= c.min_samples_per_arm) {
    if (p.low > c.max_shadow_mismatch)
      out.result = CheckResult::Fails;
    else if (p.high <= c.max_shadow_mismatch)
      out.result = CheckResult::Holds;
  }
  out.text = "shadow mismatch " + interval_text(out.estimate, out.low, out.high) + " of " + std::to_string(static_cast<long>(sh.compared)) +
             (out.result == CheckResult::Fails ? " > " : " vs ") + format_percent(c.max_shadow_mismatch);
  return out;
}

// Sample-ratio mismatch: the candidate's observed share against the configured one. Broken
// assignment, or requests lost on one arm only, show here before anywhere else.
Check sample_ratio(const Criteria& c, const SplitCounts& split) {
  Check out{"sample_ratio", "candidate share of requests since the share last changed", 0, 0, 0, split.share, c.srm_alpha};
  const double n = split.stable + split.candidate;
  const seq::Interval p = seq::proportion(split.candidate, n, c.srm_alpha, kTuneProportion);
  out.estimate = p.estimate, out.low = p.low, out.high = p.high;
  if (p.valid && n >= 2 * c.min_samples_per_arm && split.share > 0 && split.share < 1 && (p.low > split.share || p.high < split.share))
    out.result = CheckResult::Fails;
  out.text = "candidate share " + interval_text(out.estimate, out.low, out.high) + " of " + std::to_string(static_cast<long>(n)) +
             " requests, configured " + format_percent(split.share);
  return out;
}

}  // namespace

Verdict judge(const Criteria& c, const ArmOutcomes& stable, const ArmOutcomes& candidate, const ShadowOutcomes& shadow,
              const std::optional<SplitCounts>& split) {
  Verdict v;
  v.n_stable = stable.requests;
  v.n_candidate = candidate.requests;
  const Budget b = budget_for(c.alpha);
  v.checks.push_back(critical_success(c, candidate));
  v.checks.push_back(critical_crashes(c, candidate));
  const bool enough = stable.requests >= c.min_samples_per_arm && candidate.requests >= c.min_samples_per_arm;
  if (enough) {
    v.checks.push_back(own_success(c, candidate, b.own_success));
    v.checks.push_back(failure_increase(stable, candidate, b.failure_increase));
    v.checks.push_back(time_saved(c, stable, candidate, b.time_saved));
    v.checks.push_back(memory(c, stable, candidate, b.memory));
    for (auto& ch : error_classes(c, stable, candidate, b.error_class)) v.checks.push_back(std::move(ch));
  }
  if (shadow.compared > 0) v.checks.push_back(shadow_mismatch(c, shadow, b.shadow));
  if (split) v.checks.push_back(sample_ratio(c, *split));

  auto reasons = [&](auto pick) {
    std::string out;
    for (const auto& ch : v.checks)
      if (pick(ch)) out += (out.empty() ? "" : "; ") + ch.text;
    return out;
  };
  auto fails = [](const Check& ch) { return ch.result == CheckResult::Fails && ch.rule != "sample_ratio"; };
  if (std::any_of(v.checks.begin(), v.checks.end(), fails)) {
    v.decision = Decision::RollBack;
    v.reason = reasons(fails);
    return v;
  }
  auto srm = [](const Check& ch) { return ch.result == CheckResult::Fails && ch.rule == "sample_ratio"; };
  if (std::any_of(v.checks.begin(), v.checks.end(), srm)) {
    v.decision = Decision::Pause;
    v.reason = "sample-ratio mismatch: " + reasons(srm);
    return v;
  }
  if (!enough) {
    v.reason = "collecting: " + std::to_string(static_cast<long>(stable.requests)) + " stable and " +
               std::to_string(static_cast<long>(candidate.requests)) + " candidate requests of " + std::to_string(c.min_samples_per_arm) +
               " per arm before the tests judge";
    return v;
  }
  auto open = [](const Check& ch) { return ch.needed_to_keep && ch.result != CheckResult::Holds; };
  if (std::none_of(v.checks.begin(), v.checks.end(), open)) {
    v.decision = Decision::Keep;
    v.reason = "keep: " + reasons([](const Check& ch) { return ch.needed_to_keep; });
    return v;
  }
  double more = 0;
  for (const auto& ch : v.checks)
    if (open(ch)) more = std::max(more, ch.more_samples);
  v.reason = "collecting: " + reasons(open) +
             (std::isfinite(more) && more > 0 ? "; about " + std::to_string(static_cast<long>(std::ceil(more))) + " more requests per arm"
                                              : "; the difference is too close to the threshold to estimate how many more");
  return v;
}

}  // namespace pipelined::rollout

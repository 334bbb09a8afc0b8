#include "rollout/sequential.h"

#include <algorithm>

namespace pipelined::rollout::sequential {

namespace {

// The mixing variance that makes the boundary tightest at t_tune samples (Howard et al. 2021,
// "Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. (3.12) approximation).
double mixing(double alpha, double t_tune) {
  const double l = -2 * std::log(alpha);
  return (l + std::log(l + 1)) / t_tune;
}

// Effective sample size of a two-sample difference: the harmonic mean of the arms' sizes, so two
// equal arms of n count as n, and a lopsided split as its information allows.
double effective_n(double a, double b) { return a + b > 0 ? 2 * a * b / (a + b) : 0; }

}  // namespace

double boundary(double t, double alpha, double t_tune) {
  if (t <= 0) return INFINITY;
  const double r = mixing(alpha, t_tune);
  const double tr = t * r;
  return std::sqrt(2 * (tr + 1) / tr * std::log(std::sqrt(tr + 1) / alpha));
}

Interval mean_difference(const Moments& stable, const Moments& candidate, double alpha, double t_tune) {
  Interval out;
  out.estimate = candidate.mean - stable.mean;
  if (stable.n < 2 || candidate.n < 2) return out;
  const double se = std::sqrt(stable.variance() / stable.n + candidate.variance() / candidate.n);
  const double half = se * boundary(effective_n(stable.n, candidate.n), alpha, t_tune);
  out.low = out.estimate - half;
  out.high = out.estimate + half;
  out.valid = true;
  return out;
}

Interval proportion(double hits, double n, double alpha, double t_tune) {
  Interval out;
  if (n < 1) return out;
  out.estimate = hits / n;
  const double p = (hits + 1) / (n + 2);
  const double half = std::sqrt(p * (1 - p) / n) * boundary(n, alpha, t_tune);
  out.low = std::max(0.0, out.estimate - half);
  out.high = std::min(1.0, out.estimate + half);
  out.valid = true;
  return out;
}

Interval proportion_test(double hits, double n, double p0, double alpha, double t_tune) {
  Interval out;
  if (n < 1) return out;
  out.estimate = hits / n;
  const double half = std::sqrt(p0 * (1 - p0) / n) * boundary(n, alpha, t_tune);
  out.low = out.estimate - half;
  out.high = out.estimate + half;
  out.valid = true;
  return out;
}

Interval proportion_difference(double stable_hits, double stable_n, double candidate_hits, double candidate_n, double alpha, double t_tune,
                               bool pooled) {
  Interval out;
  if (stable_n < 1 || candidate_n < 1) return out;
  out.estimate = candidate_hits / candidate_n - stable_hits / stable_n;
  const double ps = (stable_hits + 1) / (stable_n + 2), pc = (candidate_hits + 1) / (candidate_n + 2);
  const double pp = (stable_hits + candidate_hits + 1) / (stable_n + candidate_n + 2);
  const double se = pooled ? std::sqrt(pp * (1 - pp) * (1 / stable_n + 1 / candidate_n))
                           : std::sqrt(ps * (1 - ps) / stable_n + pc * (1 - pc) / candidate_n);
  const double half = se * boundary(effective_n(stable_n, candidate_n), alpha, t_tune);
  out.low = out.estimate - half;
  out.high = out.estimate + half;
  out.valid = true;
  return out;
}

double samples_needed(double sd, double gap, double alpha, double t_tune, bool two_arms) {
  if (gap <= 0) return INFINITY;
  const double var = sd * sd * (two_arms ? 2 : 1);
  auto half = [&](double n) { return std::sqrt(var / n) * boundary(n, alpha, t_tune); };
  double lo = 1, hi = 1;
  while (half(hi) > gap) {
    hi *= 2;
    if (hi > 1e9) return INFINITY;
  }
  while (hi - lo > 1) {
    const double mid = std::floor((lo + hi) / 2);
    (half(mid) > gap ? lo : hi) = mid;
  }
  return hi;
}

}  // namespace pipelined::rollout::sequential

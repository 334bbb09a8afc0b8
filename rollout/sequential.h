// Anytime-valid confidence sequences: intervals that cover the true value at every sample size at
// once with probability 1 - alpha, so a guardrail may look after every request and still keep its
// error rate. The boundary is the asymptotic normal-mixture confidence sequence of Waudby-Smith,
// Arnold, Wu, Howard, Ramdas and Sekhon ("Time-uniform central limit theory and asymptotic
// confidence sequences", arXiv:2103.06476, eq. for the Gaussian mixture), the one Eppo and
// GrowthBook use. Nothing here knows about rollouts.
#pragma once

#include <cmath>

namespace pipelined::rollout::sequential {

// Running count, mean and sum of squared deviations (Welford): O(1) per sample, no sample kept.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void add(double x) {
    n += 1;
    const double d = x - mean;
    mean += d / n;
    m2 += d * (x - mean);
  }
  double variance() const { return n > 1 ? m2 / (n - 1) : 0; }
};

struct Interval {
  double estimate = 0, low = 0, high = 0;
  bool valid = false;  // false: too few samples for any statement
};

// Half-width of the sequence in standard errors at `t` samples: sqrt(2 (t r + 1)/(t r) · log(sqrt(t r + 1)/alpha)),
// with the mixing variance r chosen so the boundary is tightest at `t_tune` samples.
double boundary(double t, double alpha, double t_tune);

// candidate mean - stable mean (for log values: the log of the ratio), alpha two-sided.
Interval mean_difference(const Moments& stable, const Moments& candidate, double alpha, double t_tune);

// A proportion: `hits` of `n`. The variance uses (hits + 1) / (n + 2) so that 0 of 30 failures
// does not claim zero variance.
Interval proportion(double hits, double n, double alpha, double t_tune);

// A test of "the proportion is p0" that reads like an interval: estimate ± the boundary at the
// standard error p0 would have. Under the null its variance is known, so it needs no variance
// estimate and has more power at small n than proportion(); low > p0 or high < p0 rejects.
Interval proportion_test(double hits, double n, double p0, double alpha, double t_tune);

// candidate proportion - stable proportion. The standard error is the pooled one of "both equal"
// when `pooled` (a test of no difference), else each arm's own.
Interval proportion_difference(double stable_hits, double stable_n, double candidate_hits, double candidate_n, double alpha, double t_tune,
                               bool pooled = false);

// Samples per arm at which the sequence's half-width would shrink to `gap`, given the standard
// deviation of one sample (pooled over both arms for differences); 0 when already there.
double samples_needed(double sd_per_sample, double gap, double alpha, double t_tune, bool two_arms);

}  // namespace pipelined::rollout::sequential

// Order statistics of the benchmarks' samples: one definition for every figure they print.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace pipelined::bench {

// The q-quantile (0 < q <= 1) by nearest rank: the smallest sample with at least a share q of the
// samples at or below it (q = 1: the largest). NaN for no samples.
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

// The middle sample, or the mean of the two middle ones. NaN for no samples.
inline double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace pipelined::bench

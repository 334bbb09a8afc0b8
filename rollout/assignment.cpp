#include "rollout/assignment.h"

#include <cmath>

namespace pipelined::rollout {

namespace {
std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}
}  // namespace

int bucket_of(std::string_view salt, std::string_view key) {
  std::uint64_t h = 14695981039346656037ULL;
  h = fnv1a(h, salt);
  h = fnv1a(h, ":");
  h = fnv1a(h, key);
  // Fold the high bits in: FNV's low bits alone are weakly mixed for short keys.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return static_cast<int>(h % kBuckets);
}

int percent_to_bp(double percent) {
  if (!(percent > 0)) return 0;
  if (percent >= 100) return kBuckets;
  return static_cast<int>(std::lround(percent * 100));
}

}  // namespace pipelined::rollout

// Sticky bucketing: a key's bucket depends only on the rollout's salt and the key, so every daemon
// with the same rollout state puts a user in the same arm. A request is on the candidate arm when
// its bucket is below the share in basis points: raising the share only adds buckets, lowering it
// only removes them (monotonic, as feature-flag rollouts are).
#pragma once

#include <cstdint>
#include <string_view>

namespace pipelined::rollout {

constexpr int kBuckets = 10000;

// FNV-1a 64 of "<salt>:<key>", mod 10000.
int bucket_of(std::string_view salt, std::string_view key);

// A percent with two decimals as basis points (50 -> 5000, 12.345 -> 1235); clamped to 0..10000.
int percent_to_bp(double percent);

}  // namespace pipelined::rollout

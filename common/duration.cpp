#include "common/duration.h"

#include <cstdint>
#include <limits>

namespace pipelined::common {

namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Milliseconds per unit; 0 for an unknown unit.
std::int64_t unit_ms(std::string_view unit) {
  if (unit == "ms") return 1;
  if (unit == "s") return 1000;
  if (unit == "m") return 60'000;
  if (unit == "h") return 3'600'000;
  if (unit == "d") return 86'400'000;
  return 0;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::size_t i = 0;
  const std::size_t int_begin = i;
  while (i < text.size() && is_digit(text[i])) ++i;
  const std::string_view int_digits = text.substr(int_begin, i - int_begin);
  std::string_view frac_digits;
  if (i < text.size() && text[i] == '.') {
    const std::size_t frac_begin = ++i;
    while (i < text.size() && is_digit(text[i])) ++i;
    frac_digits = text.substr(frac_begin, i - frac_begin);
    if (frac_digits.empty()) return std::nullopt;  // "5.s"
  }
  if (int_digits.empty() && frac_digits.empty()) return std::nullopt;
  const std::int64_t per_unit = unit_ms(text.substr(i));
  if (per_unit == 0) return std::nullopt;

  // Whole units, checked for overflow at every digit.
  std::int64_t whole = 0;
  for (char c : int_digits) {
    if (whole > (kMax - (c - '0')) / 10) return std::nullopt;
    whole = whole * 10 + (c - '0');
  }
  if (whole > kMax / per_unit) return std::nullopt;
  std::int64_t ms = whole * per_unit;

  // The fraction, in integers: twelve decimals hold every fraction that lands exactly on half a
  // millisecond (at most eleven, for days), so dropping the rest never changes the rounding.
  std::int64_t numerator = 0, denominator = 1;
  for (std::size_t k = 0; k < frac_digits.size() && k < 12; ++k) {
    numerator = numerator * 10 + (frac_digits[k] - '0');
    denominator *= 10;
  }
  const auto scaled = static_cast<__int128>(numerator) * per_unit;
  const auto frac_ms = static_cast<std::int64_t>((scaled * 2 + denominator) / (2 * static_cast<__int128>(denominator)));
  if (ms > kMax - frac_ms) return std::nullopt;
  ms += frac_ms;
  return std::chrono::milliseconds(ms);
}

std::string format_duration(std::chrono::milliseconds duration) {
  const std::int64_t ms = duration.count();
  if (ms == 0) return "0s";
  // Magnitude as unsigned, so the most negative value has one too.
  const std::uint64_t magnitude = ms < 0 ? 0 - static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
  const std::string sign = ms < 0 ? "-" : "";
  for (const auto& [per_unit, unit] : {std::pair<std::uint64_t, const char*>{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}})
    if (magnitude % per_unit == 0) return sign + std::to_string(magnitude / per_unit) + unit;
  return sign + std::to_string(magnitude) + "ms";
}

}  // namespace pipelined::common

// The one duration grammar: pipectl's --since and --dwell, and the admin API's ?since=.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace pipelined::common {

// NUMBER UNIT, nothing else: NUMBER is decimal digits with an optional fraction ("15", "1.5", ".5"),
// UNIT is ms, s, m, h or d: "250ms", "30s", "15m", "1.5h", "7d". Fractions are exact (decimal, not
// floating point) and round to the nearest millisecond. nullopt for the empty string, a sign,
// spaces, a missing or unknown unit, anything else, or more than fits in milliseconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// The shortest text parse_duration reads back as the same value, in the largest unit that divides
// it: 90000 -> "90s", 5400000 -> "90m", 86400000 -> "1d", 250 -> "250ms", 0 -> "0s".
// Negative values get a leading '-' (which parse_duration refuses).
std::string format_duration(std::chrono::milliseconds duration);

}  // namespace pipelined::common

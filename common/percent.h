// The one percent formatter: pipectl's tables and the rollout verdict's reasons.
#pragma once

#include <string>

namespace pipelined::common {

// A fraction as a percent with `decimals` decimals, a space and '%': 0.953 -> "95.3 %",
// (0.125, 2) -> "12.50 %", 1.0 -> "100.0 %". Rounded like printf("%.*f").
std::string format_percent(double fraction, int decimals = 1);

}  // namespace pipelined::common

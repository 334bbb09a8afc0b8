#include "common/percent.h"

#include <algorithm>
#include <cstdio>

namespace pipelined::common {

std::string format_percent(double fraction, int decimals) {
  char buf[352];  // the widest double printed with %f, plus up to 20 decimals and " %"
  std::snprintf(buf, sizeof buf, "%.*f %%", std::clamp(decimals, 0, 20), fraction * 100);
  return buf;
}

}  // namespace pipelined::common

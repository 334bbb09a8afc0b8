// Fuzzes the shadow comparison (rollout/compare.cpp with daemon/endpoint's template helpers), as
// RequestPath::run_shadow does it: both bodies stripped of "$meta." members, the candidate rendered
// from its stage outputs, then first_difference under the rollout's ignore rules. It runs in the
// engine's completion callback, where nothing catches: any exception ends the daemon.
// Input: ignore rules (one JSON pointer per line; a line "order" sets shadow_ignore_array_order),
// separator, response template (JSON), separator, stable body (JSON), separator, candidate stage output (JSON).
#include <cstdint>
#include <sstream>
#include <string>

#include "daemon/endpoint/endpoint.h"
#include "rollout/compare.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;
using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = fuzz::split(data, size, 4);
  rollout::CompareRules rules;
  std::istringstream lines(in[0]);
  for (std::string line; std::getline(lines, line);) {
    if (line == "order") rules.ignore_array_order = true;
    // config.cpp accepts exactly the entries that start with '/'; first_difference skips the rest anyway.
    else
      rules.ignore_fields.push_back(line);
  }
  const json tmpl = json::parse(in[1], nullptr, false);
  const json stable = json::parse(in[2], nullptr, false);
  const json output = json::parse(in[3], nullptr, false);
  if (tmpl.is_discarded() || stable.is_discarded() || output.is_discarded()) return 0;

  engine::RunResult r;
  r.ok = true;
  r.outputs["translate"].json = output;
  r.outputs["ocr"].json = stable;
  const json candidate = endpoint::without_meta(tmpl, endpoint::render(tmpl, r, {"req-1-shadow", {}, {}}));
  const json stable_body = endpoint::without_meta(tmpl, stable);
  const std::string diff = rollout::first_difference(stable_body, candidate, rules);
  if (!diff.empty() && diff[0] != '/') fuzz::fail("first difference is not a JSON pointer: " + diff);
  // A body always matches itself, whatever the rules.
  if (const std::string self = rollout::first_difference(candidate, candidate, rules); !self.empty())
    fuzz::fail("a body differs from itself at " + self);
  return 0;
}

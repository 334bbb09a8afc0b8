// Runs the built pipectl as an operator would, for the e2e tests.
#pragma once

#include <string>

#include "tests/common/run_command.h"

namespace pipelined::testing {

#ifdef PIPECTL_BINARY
inline Outcome pipectl(const std::string& args) { return run(std::string(PIPECTL_BINARY) + " " + args); }
#endif

}  // namespace pipelined::testing

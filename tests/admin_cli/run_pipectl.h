// Runs the built pipectl as an operator would, for the e2e tests; and any other command the same way.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace pipelined::testing {

struct Outcome {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// `command` through /bin/sh, its output and exit code.
inline Outcome run(const std::string& command) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

#ifdef PIPECTL_BINARY
inline Outcome pipectl(const std::string& args) { return run(std::string(PIPECTL_BINARY) + " " + args); }
#endif

}  // namespace pipelined::testing

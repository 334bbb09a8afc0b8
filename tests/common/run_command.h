// Runs a command through /bin/sh as an operator would, for the tests that drive programs (pipectl,
// curl, promtool, node): its exit code and its output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace pipelined::testing {

struct Outcome {
  int code = -1;     // the exit code; -1 when the command did not exit normally or could not start
  std::string out;  // stdout and stderr together
};

inline Outcome run(const std::string& command) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed: " + command};
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace pipelined::testing

// Runs the built pipectl as an operator would, for the e2e tests.
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

inline Outcome pipectl(const std::string& args) {
  const std::string cmd = std::string(PIPECTL_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace pipelined::testing

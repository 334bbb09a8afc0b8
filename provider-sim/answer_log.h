// provider-sim --answer-log FILE: one line per answer written to a client, for benchmarks that time
// what the daemon does with an answer (bench/sse_bench: how long after an image's answer its item
// event reaches the client). Times are CLOCK_MONOTONIC in nanoseconds, which std::chrono::
// steady_clock reads on Linux: every process on the host shares it, so a client's steady_clock
// times compare with these directly.
//   <ns> <endpoint> <status> [<image url> ...]   (the URLs of an images/generations answer)
#pragma once

#include <fstream>
#include <string>
#include <string_view>

namespace provider_sim {

class AnswerLog {
 public:
  // Opens (truncates) `path`; throws std::runtime_error when it cannot.
  explicit AnswerLog(const std::string& path);
  // Called as the answer is handed to the socket (before its write, so that no client can have it
  // before the time recorded). One thread (the server's).
  void record(std::string_view endpoint, int status, const std::string& body);

 private:
  std::ofstream out_;
};

}  // namespace provider_sim

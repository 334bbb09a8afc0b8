// Turns a finished run into the rows the rollout controller stores: what the user got, and what
// the arm's own variants did (an attempt that failed counts even when a fallback rescued it).
#pragma once

#include <chrono>
#include <string>

#include "daemon/engine/engine.h"
#include "rollout/records.h"

namespace pipelined::server {

// "<stage>: <class>" of the first attempt of the arm's own variants that failed, or "".
std::string own_failure(const engine::RunResult& result);

struct FinishedRequest {
  std::string request_id;
  std::string pipeline;
  const rollout::Assignment* assignment = nullptr;
  engine::Clock::time_point started;
  std::chrono::microseconds elapsed{0};
  int http_status = 200;
  bool whole_request_fallback = false;
  std::string whole_request_failure;  // own_failure() of the candidate run a whole-request fallback replaced
};

rollout::RequestRecord request_record(const FinishedRequest& request, const engine::RunResult& result);

}  // namespace pipelined::server

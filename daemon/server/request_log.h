// The request log: one JSON line per finished frontend request (id, pipeline, endpoint, arm,
// variants, status, outcome, latency, fallback cause, own failure), on stderr or appended to a
// file, for log shippers. spdlog's sinks do the thread-safe writing.
#pragma once

#include <memory>
#include <string>

#include "rollout/records.h"

namespace spdlog {
class logger;
}

namespace pipelined::server {

class RequestLog {
 public:
  // `target`: "stderr" or a file path. Throws std::runtime_error when the file cannot be opened.
  explicit RequestLog(const std::string& target);
  void write(const rollout::RequestRecord& record, const std::string& endpoint) const;
  // A request refused before an arm was chosen (outcome "overloaded"): no run, arm "none".
  void write_refused(const std::string& request_id, const std::string& pipeline, const std::string& endpoint, int status,
                     const std::string& outcome) const;

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace pipelined::server

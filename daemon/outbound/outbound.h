// Outbound HTTP for plugins: one libcurl multi handle driven by one I/O thread, so a request in
// flight costs no thread. Per provider: base URL and key, per-attempt timeout, a cap on requests in
// flight, a requests-per-minute token bucket, retries with exponential backoff and full jitter on
// 5xx and timeouts, 429 honoured with its Retry-After, connections reused. Calls waiting for a slot
// start oldest user request first (queue_order, call_queue.h). With shared_limits configured, the
// max_in_flight and requests_per_minute of a provider hold across the replicas sharing one Redis
// (shared_limiter.h); while Redis is unreachable each replica keeps limit / expected_replicas.
#pragma once

#include "daemon/config/config.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pipelined::outbound {

struct Request {
  std::string provider;  // empty: `url` is absolute and no provider limits apply
  std::string method = "POST";
  std::string path;      // appended to the provider's base URL (or the absolute URL)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{0};  // 0: provider default
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // When the user request this call is made for arrived: a provider's waiting calls start oldest
  // request first (call_queue.h). Unset (the epoch): the time the call is sent.
  std::chrono::steady_clock::time_point request_arrived{};
};

struct Response {
  int status = 0;  // 0: no HTTP response
  std::string body;
  std::string error_class;  // "" on success; PL_ERR_* names from plugin_abi.h
  std::string error;
  int attempts = 0;
};

struct ProviderStats {
  std::uint64_t requests = 0, retries = 0, rate_limited = 0, failures = 0;
  int in_flight = 0, peak_in_flight = 0;
  // Limits shared across replicas (config shared_limits): "off" (not configured: per daemon),
  // "redis" (every call asks Redis), "local share" (Redis unreachable: limit / expected_replicas
  // locally), with shared_limit_reason saying why.
  std::string shared_limit = "off";
  std::string shared_limit_reason;
  std::uint64_t shared_waits = 0;  // times Redis answered "retry after" (the call stayed queued)
};

class OutboundClient {
 public:
  // `shared`: enabled, each call a provider's local limits allow also asks Redis (shared_limiter.h);
  // a call Redis holds back stays queued in its place and is asked for again when Redis says.
  // Read once: update_providers() does not change it.
  explicit OutboundClient(const std::map<std::string, config::ProviderConfig>& providers, const config::SharedLimitsConfig& shared = {});
  ~OutboundClient();  // fails what is still queued with "shutting down", then joins

  // `done` runs exactly once on the I/O thread; keep it short.
  void send(Request request, std::function<void(Response)> done);

  // Replace provider settings (config reload); requests in flight keep the old ones.
  void update_providers(const std::map<std::string, config::ProviderConfig>& providers);

  std::map<std::string, ProviderStats> stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::outbound

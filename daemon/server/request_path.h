// One frontend request's lifecycle after routing: assign an arm -> run the pipeline -> fall back
// to stable when the candidate failed the whole request -> respond -> record -> shadow run. A
// request that asks for server-sent events gets the run's progress as events, then the same body.
// Keeps the cancel flags of the requests in flight, for drain.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "daemon/config/config.h"
#include "daemon/engine/engine.h"
#include "daemon/metrics/metrics.h"
#include "daemon/server/http_listener.h"
#include "daemon/server/request_log.h"
#include "rollout/rollout.h"

namespace pipelined::server {

class RequestPath {
 public:
  // `log` may be null (no request log).
  RequestPath(engine::Engine& engine, rollout::RolloutController& rollout, metrics::RequestSeries& metrics, const RequestLog* log);

  // Serves `request` on `endpoint` of `plugins` (the endpoint belongs to plugins->config).
  void serve(Request&& request, Reply reply, std::shared_ptr<const plugin_host::PluginSet> plugins, const config::EndpointConfig& endpoint);

  std::size_t in_flight() const;
  bool busy() const;  // requests or shadow runs still going
  void cancel_all();
  // While draining, a failed candidate request is not rerun on stable.
  void set_draining(bool draining) { draining_ = draining; }

 private:
  struct Exchange;
  class Slot;
  Slot take_slot(const config::EndpointConfig& endpoint);
  void open_events(const std::shared_ptr<Exchange>& x);
  void start_run(const std::shared_ptr<Exchange>& x, std::map<std::string, std::string> variants);
  void finish(const std::shared_ptr<Exchange>& x, engine::RunResult result);
  void run_shadow(const std::shared_ptr<Exchange>& x, nlohmann::json stable_body, std::chrono::microseconds stable_elapsed);

  engine::Engine& engine_;
  rollout::RolloutController& rollout_;
  metrics::RequestSeries& metrics_;
  const RequestLog* log_;
  mutable std::mutex inflight_mu_;
  std::map<std::uint64_t, std::shared_ptr<std::atomic<bool>>> inflight_;  // cancel flags
  std::atomic<std::uint64_t> next_serial_{1};
  std::atomic<int> shadows_{0};
  std::atomic<bool> draining_{false};
  std::string id_prefix_;
  // Requests running per endpoint ("METHOD path"), against its max_concurrent.
  std::mutex running_mu_;
  std::map<std::string, int> running_;
};

}  // namespace pipelined::server

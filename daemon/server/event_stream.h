// Server-sent events for a frontend request that asked for them (Accept: text/event-stream): the
// engine's progress (stage ends, fallbacks, emitted items) as events while the run goes on, then the
// plain response's body as a `result` event, or an `error` event. Event names and data are in
// docs/server-sent-events.md. Thread-safe: the engine reports from pool and plugin threads.
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "daemon/engine/engine.h"
#include "daemon/server/http_listener.h"

namespace pipelined::server {

// Whether the request's Accept header asks for an event stream.
bool wants_event_stream(const Request& request);

// `event: <name>` and `data: <json>` lines and the blank line that ends an event.
std::string sse_event(std::string_view name, const nlohmann::json& data);

// The keep-alive comment written on a quiet stream.
inline constexpr std::string_view kSseKeepAlive = ": keep-alive\n\n";

// 200, Content-Type: text/event-stream, no caching or proxy buffering.
ResponseHeader event_stream_header(unsigned version, const std::string& request_id);

class EventStream {
 public:
  explicit EventStream(std::shared_ptr<ResponseStream> out) : out_(std::move(out)) {}

  // A stage ended or is falling back, or an item was emitted: `stage`, `fallback`, `item`.
  void progress(const engine::RunEvent& event);
  // The stages the run never started (skipped), which the engine does not report as they happen.
  void skipped_stages(const engine::RunResult& result);
  // A candidate run failed as a whole and reruns on stable.
  void request_fallback(const std::string& error_class, const std::string& error_message);
  // The last event (`result` or `error` with the body a plain request gets), then the end.
  void finish(std::string_view event, const nlohmann::json& body);

 private:
  void send(std::string_view name, const nlohmann::json& data);

  std::shared_ptr<ResponseStream> out_;
  std::mutex mu_;  // orders each event's write against finish()
  // Set by finish(): an item a plugin emits after its run was abandoned can come later; dropped.
  bool finished_ = false;
};

}  // namespace pipelined::server

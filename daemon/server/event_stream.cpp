#include "daemon/server/event_stream.h"

#include <boost/beast/core/string.hpp>

namespace pipelined::server {

namespace http = boost::beast::http;
using nlohmann::json;

bool wants_event_stream(const Request& request) {
  const std::string_view accept = request[http::field::accept];
  constexpr std::string_view kType = "text/event-stream";
  for (std::size_t i = 0; i + kType.size() <= accept.size(); ++i)
    if (boost::beast::iequals(accept.substr(i, kType.size()), kType)) return true;
  return false;
}

std::string sse_event(std::string_view name, const json& data) {
  // dump() escapes newlines inside strings, so the data is one line and needs no splitting.
  std::string out = "event: ";
  out.append(name);
  out += "\ndata: ";
  out += data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // a request id or file name need not be UTF-8
  out += "\n\n";
  return out;
}

ResponseHeader event_stream_header(unsigned version, const std::string& request_id) {
  ResponseHeader h{http::status::ok, version};
  h.set(http::field::content_type, "text/event-stream; charset=utf-8");
  h.set(http::field::cache_control, "no-cache");
  h.set("X-Accel-Buffering", "no");  // nginx and alike would otherwise hold events back
  h.set("X-Request-Id", request_id);
  return h;
}

namespace {
json stage_data(const engine::StageRecord& r) {
  json d = {{"stage", r.stage},
            {"variant", r.variant},
            {"status", engine::to_string(r.status)},
            {"duration_ms", static_cast<double>(r.duration.count()) / 1000.0},
            {"attempts", r.attempts}};
  if (!r.error_class.empty()) d["error_class"] = r.error_class;
  if (!r.error_message.empty()) d["error_message"] = r.error_message;
  return d;
}
}  // namespace

void EventStream::progress(const engine::RunEvent& e) {
  using Kind = engine::RunEvent::Kind;
  switch (e.kind) {
    case Kind::StageEnded:
      return send("stage", stage_data(*e.record));
    case Kind::StageFallingBack:
      return send("fallback", {{"scope", "stage"},
                               {"stage", e.stage},
                               {"from", e.record->variant},
                               {"error_class", e.record->error_class},
                               {"error_message", e.record->error_message}});
    case Kind::Item:
      return send("item", {{"stage", e.stage}, {"item", *e.item}});
  }
}

void EventStream::skipped_stages(const engine::RunResult& result) {
  for (const auto& s : result.stages)
    if (s.status == engine::StageStatus::Skipped) send("stage", stage_data(s));
}

void EventStream::request_fallback(const std::string& error_class, const std::string& error_message) {
  send("fallback",
       {{"scope", "request"}, {"from", "candidate"}, {"to", "stable"}, {"error_class", error_class}, {"error_message", error_message}});
}

void EventStream::finish(std::string_view event, const json& body) {
  std::string last = sse_event(event, body);
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  out_->write(std::move(last));
  out_->end();
}

void EventStream::send(std::string_view name, const json& data) {
  std::string text = sse_event(name, data);  // formatted before the lock: only the queueing is ordered
  std::lock_guard lock(mu_);
  if (!finished_) out_->write(std::move(text));
}

}  // namespace pipelined::server

#include "daemon/server/request_path.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <random>
#include <utility>

#include "daemon/endpoint/endpoint.h"
#include "daemon/server/event_stream.h"
#include "daemon/server/recorder.h"

namespace pipelined::server {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// One request's place under its endpoint's max_concurrent, given back when the response is out
// (not when the Exchange ends: a shadow run keeps that after the answer).
class RequestPath::Slot {
 public:
  Slot() = default;
  Slot(RequestPath* path, std::string key) : path_(path), key_(std::move(key)), taken_(true) {}
  Slot(Slot&& o) noexcept : path_(std::exchange(o.path_, nullptr)), key_(std::move(o.key_)), taken_(o.taken_) {}
  Slot& operator=(Slot&& o) noexcept {
    release();
    path_ = std::exchange(o.path_, nullptr);
    key_ = std::move(o.key_);
    taken_ = o.taken_;
    return *this;
  }
  explicit operator bool() const { return taken_; }  // false: the endpoint is full
  ~Slot() { release(); }
  void release() {
    if (path_ == nullptr) return;
    std::lock_guard lock(path_->running_mu_);
    --path_->running_[key_];
    path_ = nullptr;
  }

 private:
  RequestPath* path_ = nullptr;  // null when nothing is to be given back (no cap, or refused)
  std::string key_;
  bool taken_ = false;
};

RequestPath::Slot RequestPath::take_slot(const config::EndpointConfig& endpoint) {
  if (endpoint.max_concurrent == 0) return Slot(nullptr, {});
  std::string key = endpoint.method + " " + endpoint.path;
  std::lock_guard lock(running_mu_);
  int& running = running_[key];
  if (running >= endpoint.max_concurrent) return Slot();
  ++running;
  return Slot(this, std::move(key));
}

struct RequestPath::Exchange {
  Slot slot;
  Reply reply;
  unsigned version = 11;
  bool keep_alive = true;
  std::string request_id;
  std::shared_ptr<const plugin_host::PluginSet> plugins;
  const config::EndpointConfig* endpoint = nullptr;  // owned by plugins->config
  rollout::Assignment assignment;
  engine::Payload input;  // kept for a whole-request fallback and shadow runs
  Clock::time_point started = Clock::now();
  std::uint64_t serial = 0;
  bool whole_fallback = false;
  std::string whole_failure;
  std::shared_ptr<EventStream> events;  // set when the client asked for server-sent events
  std::atomic<bool> client_gone{false};  // an event stream's client disconnected
};

RequestPath::RequestPath(engine::Engine& engine, rollout::RolloutController& rollout, metrics::RequestSeries& metrics,
                         const RequestLog* log)
    : engine_(engine), rollout_(rollout), metrics_(metrics), log_(log) {
  std::random_device rd;
  char prefix[9];
  std::snprintf(prefix, sizeof prefix, "%08x", rd());
  id_prefix_ = prefix;
}

void RequestPath::serve(Request&& req, Reply reply, std::shared_ptr<const plugin_host::PluginSet> plugins,
                        const config::EndpointConfig& endpoint) {
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  // Events go out chunked, which HTTP/1.0 does not have: such a client gets the plain answer.
  const bool stream = endpoint.streaming && wants_event_stream(req) && version >= 11;
  const std::uint64_t serial = next_serial_++;
  std::string request_id(req["X-Request-Id"]);
  if (request_id.empty() || request_id.size() > 128) request_id = id_prefix_ + "-" + std::to_string(serial);
  Slot slot = take_slot(endpoint);
  if (!slot) {
    // Refused before the body is parsed or an arm chosen: the guardrails never see it, and it costs
    // the process next to nothing. A plain 503 even to an event-stream client, so the status and
    // Retry-After are where a retrying client looks.
    metrics_.request(endpoint.pipeline, endpoint.path, "none", "overloaded", {});
    if (log_ != nullptr) log_->write_refused(request_id, endpoint.pipeline, endpoint.path, 503, "overloaded");
    auto r = error_response(version, keep_alive, 503,
                            endpoint.path + " is running its maximum of " + std::to_string(endpoint.max_concurrent) + " requests");
    r.set(http::field::retry_after, "1");
    r.set("X-Request-Id", request_id);
    return reply(std::move(r));
  }
  auto input = endpoint::build_input(endpoint, req[http::field::content_type], req.body());
  if (auto* e = std::get_if<endpoint::HttpError>(&input)) {
    metrics_.request(endpoint.pipeline, endpoint.path, "none", "rejected", {});
    if (!stream) return reply(error_response(version, keep_alive, e->status, e->message));
    EventStream events(reply.stream(event_stream_header(version, request_id), {}));
    return events.finish("error", endpoint::error_body(e->status, e->message));
  }

  auto x = std::make_shared<Exchange>();
  x->slot = std::move(slot);
  x->reply = std::move(reply);
  x->version = version;
  x->keep_alive = keep_alive;
  x->plugins = std::move(plugins);
  x->endpoint = &endpoint;
  x->input = std::move(std::get<engine::Payload>(input));
  x->serial = serial;
  x->request_id = std::move(request_id);

  auto header = [&req](std::string_view n) { return std::string(req[n]); };
  const std::string key = endpoint::sticky_key(x->plugins->config->rollout.sticky_key, header, x->input);
  std::optional<rollout::Arm> forced;
  const std::string force = header("X-Pipelined-Arm");
  if (force == "stable") forced = rollout::Arm::Stable;
  if (force == "candidate") forced = rollout::Arm::Candidate;
  x->assignment = rollout_.assign(endpoint.pipeline, key, forced);
  if (stream) open_events(x);
  start_run(x, x->assignment.variants);
}

// The stream's header goes out now; events follow as the run reports progress. A client that goes
// away cancels the run it is waiting for (a whole-request fallback's too: the flag is looked up).
void RequestPath::open_events(const std::shared_ptr<Exchange>& x) {
  auto header = event_stream_header(x->version, x->request_id);
  header.set("X-Pipelined-Arm", rollout::to_string(x->assignment.arm));
  StreamOptions options;
  options.heartbeat_every = x->plugins->config->server.sse_keepalive;
  options.heartbeat = std::string(kSseKeepAlive);
  options.on_gone = [this, weak = std::weak_ptr<Exchange>(x)] {
    auto x = weak.lock();
    if (!x) return;
    spdlog::info("[{}] the client closed its event stream; cancelling the request", x->request_id);
    x->client_gone = true;
    std::lock_guard lock(inflight_mu_);
    if (auto it = inflight_.find(x->serial); it != inflight_.end()) it->second->store(true);
  };
  x->events = std::make_shared<EventStream>(x->reply.stream(std::move(header), std::move(options)));
}

void RequestPath::start_run(const std::shared_ptr<Exchange>& x, std::map<std::string, std::string> variants) {
  engine::RunRequest run;
  run.request_id = x->request_id;
  run.pipeline = x->endpoint->pipeline;
  run.deadline = x->started + x->plugins->config->server.request_timeout;
  run.arrived = x->started;
  run.memory_limit_bytes = x->plugins->config->server.max_request_memory_mb << 20;
  run.input = x->input;
  run.variants = std::move(variants);
  if (x->events) run.observer = [events = x->events](const engine::RunEvent& e) { events->progress(e); };
  {
    std::lock_guard lock(inflight_mu_);
    inflight_[x->serial] = run.cancelled;
    if (x->client_gone) run.cancelled->store(true);  // gone before this run's flag was registered
  }
  engine_.run(x->plugins, std::move(run), [this, x](engine::RunResult r) { finish(x, std::move(r)); });
}

void RequestPath::finish(const std::shared_ptr<Exchange>& x, engine::RunResult r) {
  if (!r.ok && !r.partial && !x->whole_fallback && x->assignment.arm == rollout::Arm::Candidate && x->assignment.fallback_whole_request &&
      Clock::now() < x->started + x->plugins->config->server.request_timeout && !draining_ && !x->client_gone) {
    spdlog::info("[{}] candidate run failed ({}: {}); rerunning the whole request on stable", x->request_id, r.error_class,
                 r.error_message);
    x->whole_fallback = true;
    x->whole_failure = own_failure(r);
    if (x->events) x->events->request_fallback(r.error_class, r.error_message);
    return start_run(x, {});
  }
  {
    std::lock_guard lock(inflight_mu_);
    inflight_.erase(x->serial);
  }
  x->slot.release();
  const int status = endpoint::status_for(r);
  endpoint::ResponseMeta meta{x->request_id, std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - x->started), {}};
  for (const auto& s : r.stages)
    if (!s.variant.empty()) meta.variants[s.stage] = s.variant;
  json body =
      (r.ok || r.partial) ? endpoint::render(x->endpoint->response, r, meta) : endpoint::error_body(status, r.error_message, r.error_class);
  if (x->events) {
    // The status the plain request would get is in the body of an error; a result is a 200's.
    x->events->skipped_stages(r);
    x->events->finish(r.ok || r.partial ? "result" : "error", body);
  } else {
    auto response = json_response(x->version, x->keep_alive, status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    response.set("X-Request-Id", x->request_id);
    response.set("X-Pipelined-Arm", rollout::to_string(x->assignment.arm));
    x->reply(std::move(response));
  }

  // A client that left is recorded as such (status 499, as proxies log it): no one got an answer.
  const bool gone = x->client_gone;
  FinishedRequest done{x->request_id, x->endpoint->pipeline, &x->assignment, x->started, meta.elapsed, gone ? 499 : status,
                       x->whole_fallback, x->whole_failure};
  auto record = request_record(done, r);
  if (gone) record.outcome = "cancelled";
  metrics_.request(done.pipeline, x->endpoint->path, rollout::to_string(x->assignment.arm), record.outcome, meta.elapsed);
  for (const auto& s : r.stages) {
    if (s.status != engine::StageStatus::Skipped) metrics_.stage(done.pipeline, s.stage, s.variant, s.duration);
    if (s.status == engine::StageStatus::FellBack) metrics_.fallback(done.pipeline, s.stage);
  }
  if (x->whole_fallback) metrics_.fallback(done.pipeline, "(whole_request)");
  if (log_ != nullptr) log_->write(record, x->endpoint->path);
  rollout_.record(std::move(record));
  if (x->assignment.shadow && (r.ok || r.partial) && !gone) run_shadow(x, std::move(body), meta.elapsed);
}

// The candidate runs beside stable after the response went out; only the comparison is kept.
void RequestPath::run_shadow(const std::shared_ptr<Exchange>& x, json stable_body, std::chrono::microseconds stable_elapsed) {
  ++shadows_;
  engine::RunRequest run;
  run.request_id = x->request_id + "-shadow";
  run.pipeline = x->endpoint->pipeline;
  run.deadline = Clock::now() + x->plugins->config->server.request_timeout;
  run.memory_limit_bytes = x->plugins->config->server.max_request_memory_mb << 20;
  run.input = x->input;
  run.variants = x->assignment.shadow_variants;
  const auto shadow_started = Clock::now();
  engine_.run(x->plugins, std::move(run),
              [this, x, stable_body = std::move(stable_body), stable_elapsed, shadow_started](engine::RunResult r) {
                rollout::ShadowRecord rec;
                rec.time_ms = x->assignment.started_ms;
                rec.request_id = x->request_id;
                rec.pipeline = x->endpoint->pipeline;
                rec.rollout_id = x->assignment.rollout_id;
                rec.candidate_ok = r.ok;
                rec.stable_latency_us = stable_elapsed.count();
                rec.candidate_latency_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - shadow_started).count();
                if (r.ok || r.partial) {
                  const json& t = x->endpoint->response;
                  const json candidate = endpoint::without_meta(t, endpoint::render(t, r, {x->request_id, {}, {}}));
                  rec.first_difference = rollout_.compare_outputs(endpoint::without_meta(t, stable_body), candidate);
                  rec.matched = rec.first_difference.empty();
                } else {
                  rec.first_difference = "run failed: " + r.error_class;
                }
                rollout_.record_shadow(std::move(rec));
                --shadows_;
              });
}

std::size_t RequestPath::in_flight() const {
  std::lock_guard lock(inflight_mu_);
  return inflight_.size();
}

bool RequestPath::busy() const { return in_flight() > 0 || shadows_ > 0; }

void RequestPath::cancel_all() {
  std::lock_guard lock(inflight_mu_);
  if (!inflight_.empty()) spdlog::warn("drain timeout: cancelling {} requests", inflight_.size());
  for (auto& [id, flag] : inflight_) flag->store(true);
}

}  // namespace pipelined::server

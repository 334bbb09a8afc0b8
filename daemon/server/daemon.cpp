#include "daemon/server/daemon.h"

#include <spdlog/spdlog.h>

#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "daemon/config/config.h"
#include "daemon/endpoint/endpoint.h"
#include "daemon/engine/engine.h"
#include "daemon/memory/memory_account.h"
#include "daemon/plugin_host/plugin_host.h"
#include "daemon/pool/worker_pool.h"
#include "daemon/server/http_listener.h"
#include "rollout/rollout.h"
#if PIPELINED_HAVE_OUTBOUND
#include "daemon/outbound/outbound.h"
#endif

#ifndef PIPELINED_VERSION
#define PIPELINED_VERSION "0.0.0"
#endif

namespace pipelined::server {

namespace net = boost::asio;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

std::string path_of(const Request& req) {
  const std::string_view target = req.target();
  return std::string(target.substr(0, target.find('?')));
}

std::string header(const Request& req, std::string_view name) { return std::string(req[name]); }

std::int64_t micros_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

std::string load_errors_text(const std::vector<plugin_host::LoadError>& errors) {
  std::string out;
  for (const auto& e : errors) out += (out.empty() ? "" : "; ") + e.to_string();
  return out;
}

json load_errors_json(const std::vector<plugin_host::LoadError>& errors) {
  json out = json::array();
  for (const auto& e : errors) out.push_back({{"file", e.file}, {"reason", e.reason}});
  return out;
}

}  // namespace

// One frontend request from arrival to its metrics row.
struct Exchange {
  Reply reply;
  unsigned version = 11;
  bool keep_alive = true;
  std::string request_id;
  std::shared_ptr<const plugin_host::PluginSet> plugins;
  const config::EndpointConfig* endpoint = nullptr;  // owned by plugins->config
  rollout::Assignment assignment;
  engine::Payload input;  // kept for a whole-request fallback and shadow runs
  Clock::time_point started = Clock::now();
  std::int64_t started_ms = 0;
  std::uint64_t serial = 0;
  bool whole_fallback = false;
  std::string fallback_cause;
};

struct Daemon::Impl {
  std::string config_path;
  std::shared_ptr<const config::Config> boot_config;
  Clock::time_point started = Clock::now();

  std::unique_ptr<rollout::RolloutController> rollout;
  // Destroyed in reverse: the outbound client first (it fails what is in flight, so pending plugin
  // runs complete), then the engine (it waits for them), then the pool they complete on.
  std::unique_ptr<pool::WorkerPool> pool;
  std::unique_ptr<engine::Engine> engine;
#if PIPELINED_HAVE_OUTBOUND
  std::unique_ptr<outbound::OutboundClient> outbound;
#endif
  std::unique_ptr<plugin_host::PluginHost> plugins;
  net::io_context io;
  std::unique_ptr<HttpListener> frontend, admin_unix, admin_tcp;

  std::mutex state_mu;
  std::shared_ptr<const config::Config> config;  // the running config (the plugins' when loaded)
  std::string not_ready_reason;

  std::mutex inflight_mu;
  std::map<std::uint64_t, std::shared_ptr<std::atomic<bool>>> inflight;  // cancel flags
  std::atomic<std::uint64_t> next_serial{1};
  std::atomic<int> background{0};  // shadow runs still going
  std::string id_prefix;
  std::atomic<bool> draining{false};

  explicit Impl(std::string path) : config_path(std::move(path)) {
    auto loaded = config::load_file(config_path);
    if (!loaded.errors.empty()) {
      std::string text = "invalid config:";
      for (const auto& e : loaded.errors) text += "\n  " + e.to_string();
      throw std::runtime_error(text);
    }
    config = boot_config = loaded.config;
    std::random_device rd;
    char prefix[9];
    std::snprintf(prefix, sizeof prefix, "%08x", rd());
    id_prefix = prefix;

    rollout = std::make_unique<rollout::RolloutController>(config);
#if PIPELINED_HAVE_OUTBOUND
    outbound = std::make_unique<outbound::OutboundClient>(config->providers);
    pool = std::make_unique<pool::WorkerPool>(config->worker_threads);
    engine = std::make_unique<engine::Engine>(*pool, outbound.get());
#else
    pool = std::make_unique<pool::WorkerPool>(config->worker_threads);
    engine = std::make_unique<engine::Engine>(*pool, nullptr);
#endif
    plugins = std::make_unique<plugin_host::PluginHost>(engine->services());
    const auto errors = plugins->load(config);
    if (!errors.empty()) {
      for (const auto& e : errors) spdlog::error("plugin refused: {}", e.to_string());
      not_ready_reason = "plugins not loaded: " + load_errors_text(errors);
    }

    const auto& s = config->server;
    ListenerOptions front{s.body_limit_bytes, s.header_limit_bytes, s.read_timeout, s.idle_timeout, ""};
    frontend = std::make_unique<HttpListener>(io, front, [this](Request&& r, Reply reply) { serve_frontend(std::move(r), std::move(reply)); });
    if (auto e = frontend->listen_tcp(s.listen_address, s.listen_port); !e.empty()) throw std::runtime_error(e);

    ListenerOptions admin{1 << 20, 16 << 10, s.read_timeout, s.idle_timeout, ""};
    auto admin_handler = [this](Request&& r, Reply reply) { serve_admin(std::move(r), std::move(reply)); };
    if (!config->admin.socket_path.empty()) {
      admin_unix = std::make_unique<HttpListener>(io, admin, admin_handler);
      if (auto e = admin_unix->listen_unix(config->admin.socket_path); !e.empty()) throw std::runtime_error(e);
    }
    if (config->admin.tcp_port != 0 || !config->admin.tcp_address.empty()) {
      admin.bearer_token = config->admin.token;
      admin_tcp = std::make_unique<HttpListener>(io, admin, admin_handler);
      if (auto e = admin_tcp->listen_tcp(config->admin.tcp_address, config->admin.tcp_port); !e.empty()) throw std::runtime_error(e);
    }
    rollout->start();
  }

  std::shared_ptr<const config::Config> current_config() {
    std::lock_guard lock(state_mu);
    return config;
  }

  // ---- frontend ----

  void serve_frontend(Request&& req, Reply reply) {
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    auto fail = [&](int status, const std::string& message) { reply(error_response(version, keep_alive, status, message)); };
    const std::string path = path_of(req);
    if (path == "/healthz" && req.method() == http::verb::get) return reply(json_response(version, keep_alive, 200, R"({"status":"alive"})"));
    if (path == "/readyz" && req.method() == http::verb::get) {
      std::lock_guard lock(state_mu);
      if (plugins->current() && not_ready_reason.empty()) return reply(json_response(version, keep_alive, 200, R"({"status":"ready"})"));
      json body = {{"status", "not ready"}, {"reason", not_ready_reason.empty() ? "no plugins loaded" : not_ready_reason}};
      return reply(json_response(version, keep_alive, 503, body.dump()));
    }

    auto set = plugins->current();
    const auto cfg = set ? set->config : current_config();
    const config::EndpointConfig* endpoint = nullptr;
    std::string allow;
    for (const auto& e : cfg->endpoints) {
      if (e.path != path) continue;
      allow += (allow.empty() ? "" : ", ") + e.method;
      if (e.method == req.method_string()) endpoint = &e;
    }
    if (endpoint == nullptr) {
      if (allow.empty()) return fail(404, "no endpoint " + path);
      auto r = error_response(version, keep_alive, 405, std::string(req.method_string()) + " is not allowed on " + path);
      r.set(http::field::allow, allow);
      return reply(std::move(r));
    }
    if (!set) return fail(503, "plugins are not loaded: " + not_ready_reason);

    auto input = endpoint::build_input(*endpoint, req[http::field::content_type], req.body());
    if (auto* e = std::get_if<endpoint::HttpError>(&input)) return fail(e->status, e->message);

    auto x = std::make_shared<Exchange>();
    x->reply = std::move(reply);
    x->version = version;
    x->keep_alive = keep_alive;
    x->plugins = set;
    x->endpoint = endpoint;
    x->input = std::move(std::get<engine::Payload>(input));
    x->started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    x->serial = next_serial++;
    x->request_id = header(req, "X-Request-Id");
    if (x->request_id.empty() || x->request_id.size() > 128) x->request_id = id_prefix + "-" + std::to_string(x->serial);

    const std::string key = endpoint::sticky_key(cfg->rollout.sticky_key, [&req](std::string_view n) { return header(req, n); }, x->input);
    std::optional<rollout::Arm> forced;
    const std::string force = header(req, "X-Pipelined-Arm");
    if (force == "stable") forced = rollout::Arm::Stable;
    if (force == "candidate") forced = rollout::Arm::Candidate;
    x->assignment = rollout->assign(endpoint->pipeline, key, forced);
    start_run(x, x->assignment.variants);
  }

  void start_run(const std::shared_ptr<Exchange>& x, std::map<std::string, std::string> variants) {
    engine::RunRequest run;
    run.request_id = x->request_id;
    run.pipeline = x->endpoint->pipeline;
    run.deadline = x->started + x->plugins->config->server.request_timeout;
    run.input = x->input;
    run.variants = std::move(variants);
    {
      std::lock_guard lock(inflight_mu);
      inflight[x->serial] = run.cancelled;
    }
    engine->run(x->plugins, std::move(run), [this, x](engine::RunResult r) { finish(x, std::move(r)); });
  }

  void finish(const std::shared_ptr<Exchange>& x, engine::RunResult r) {
    if (!r.ok && !r.partial && !x->whole_fallback && x->assignment.arm == rollout::Arm::Candidate &&
        x->assignment.fallback_whole_request && Clock::now() < x->started + x->plugins->config->server.request_timeout &&
        !draining) {
      spdlog::info("[{}] candidate run failed ({}: {}); rerunning the whole request on stable", x->request_id, r.error_class,
                   r.error_message);
      x->whole_fallback = true;
      x->fallback_cause = r.error_class;
      return start_run(x, {});
    }
    {
      std::lock_guard lock(inflight_mu);
      inflight.erase(x->serial);
    }
    const int status = endpoint::status_for(r);
    endpoint::ResponseMeta meta{x->request_id, std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - x->started), {}};
    for (const auto& s : r.stages)
      if (!s.variant.empty()) meta.variants[s.stage] = s.variant;
    json body = (r.ok || r.partial) ? endpoint::render(x->endpoint->response, r, meta)
                                    : endpoint::error_body(status, r.error_message, r.error_class);
    auto response = json_response(x->version, x->keep_alive, status, body.dump());
    response.set("X-Request-Id", x->request_id);
    response.set("X-Pipelined-Arm", rollout::to_string(x->assignment.arm));
    x->reply(std::move(response));
    record(*x, r, status, meta.elapsed);
    if (x->assignment.shadow && (r.ok || r.partial)) run_shadow(x, std::move(body), meta.elapsed);
  }

  void record(const Exchange& x, const engine::RunResult& r, int status, std::chrono::microseconds elapsed) {
    rollout::RequestRecord rec;
    rec.time_ms = x.started_ms;
    rec.request_id = x.request_id;
    rec.pipeline = x.endpoint->pipeline;
    rec.rollout_id = x.assignment.rollout_id;
    rec.arm = x.assignment.arm;
    rec.bucket = x.assignment.bucket;
    rec.http_status = status;
    rec.outcome = r.ok ? "ok" : r.partial ? "partial" : "error";
    rec.latency_us = elapsed.count();
    rec.fell_back = r.fell_back || x.whole_fallback;
    rec.fallback_cause = x.fallback_cause;
    rec.error_class = r.error_class;
    rec.peak_bytes = r.peak_bytes;
    rec.rss_bytes = memory::process_rss_bytes();
    for (const auto& s : r.stages) {
      if (rec.fallback_cause.empty() && s.status == engine::StageStatus::FellBack) rec.fallback_cause = s.stage + ": " + s.error_class;
      rec.stages.push_back({s.stage, s.variant, s.plugin_version, micros_between(x.started, s.started), s.duration.count(),
                            engine::to_string(s.status), s.attempts, s.error_class, s.peak_bytes});
    }
    rollout->record(std::move(rec));
  }

  // The candidate runs beside stable after the response went out; only the comparison is kept.
  void run_shadow(const std::shared_ptr<Exchange>& x, json stable_body, std::chrono::microseconds stable_elapsed) {
    ++background;
    engine::RunRequest run;
    run.request_id = x->request_id + "-shadow";
    run.pipeline = x->endpoint->pipeline;
    run.deadline = Clock::now() + x->plugins->config->server.request_timeout;
    run.input = x->input;
    run.variants = x->assignment.shadow_variants;
    const auto shadow_started = Clock::now();
    engine->run(x->plugins, std::move(run), [this, x, stable_body = std::move(stable_body), stable_elapsed, shadow_started](engine::RunResult r) {
      rollout::ShadowRecord rec;
      rec.time_ms = x->started_ms;
      rec.request_id = x->request_id;
      rec.pipeline = x->endpoint->pipeline;
      rec.rollout_id = x->assignment.rollout_id;
      rec.candidate_ok = r.ok;
      rec.stable_latency_us = stable_elapsed.count();
      rec.candidate_latency_us = micros_between(shadow_started, Clock::now());
      if (r.ok || r.partial) {
        // $meta values (elapsed time, request id) differ by nature: compare the stage data only.
        endpoint::ResponseMeta same{x->request_id, {}, {}};
        json candidate = endpoint::render(x->endpoint->response, r, same);
        json stable = stable_body;
        for (auto& [k, v] : x->endpoint->response.items())
          if (v.is_string() && v.get<std::string>().rfind("$meta.", 0) == 0) stable[k] = candidate[k];
        rec.first_difference = rollout->compare_outputs(stable, candidate);
        rec.matched = rec.first_difference.empty();
      } else {
        rec.first_difference = "run failed: " + r.error_class;
      }
      rollout->record_shadow(std::move(rec));
      --background;
    });
  }

  // ---- admin ----

  void serve_admin(Request&& req, Reply reply) {
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const std::string path = path_of(req);
    const std::string target(req.target());
    const std::string method(req.method_string());
    auto send = [reply, version, keep_alive](int status, const json& body) { reply(json_response(version, keep_alive, status, body.dump())); };
    if (path.rfind("/admin/rollout", 0) == 0 || path.rfind("/admin/report", 0) == 0) {
      // Rollout changes touch SQLite: off the I/O threads.
      pool->submit([this, send, method, target, body = std::move(req.body())] {
        auto r = rollout->handle_admin(method, target, body);
        send(r.status, r.body);
      });
      return;
    }
    if (path == "/admin/status" && method == "GET") return send(200, status());
    if (path == "/admin/plugins" && method == "GET") return send(200, plugins_json());
    if (path == "/admin/plugins/reload" && method == "POST") {
      std::vector<std::string> only;
      if (!req.body().empty()) {
        json body = json::parse(req.body(), nullptr, false);
        if (body.is_discarded() || !body.is_object() || (body.contains("plugins") && !body["plugins"].is_array()))
          return send(400, endpoint::error_body(400, R"(expected {"plugins": ["name", ...]} or an empty body)"));
        for (const auto& p : body.value("plugins", json::array()))
          if (p.is_string()) only.push_back(p.get<std::string>());
      }
      pool->submit([this, send, only] {
        auto [status, body] = reload(current_config(), only);
        send(status, body);
      });
      return;
    }
    if (path == "/admin/config/reload" && method == "POST") {
      pool->submit([this, send] {
        auto [status, body] = reload_config();
        send(status, body);
      });
      return;
    }
    send(404, endpoint::error_body(404, "no admin route " + method + " " + path));
  }

  json plugins_json() {
    json list = json::array();
    for (const auto& p : plugins->describe())
      list.push_back({{"pipeline", p.pipeline}, {"stage", p.stage}, {"variant", p.variant}, {"plugin", p.plugin_name},
                      {"version", p.plugin_version}, {"file", p.file}, {"generation", p.generation}});
    auto set = plugins->current();
    return {{"generation", set ? set->generation : 0}, {"plugins", list}, {"retired_libraries", plugins->retired_libraries()}};
  }

  json status() {
    std::size_t in_flight = 0;
    {
      std::lock_guard lock(inflight_mu);
      in_flight = inflight.size();
    }
    auto r = rollout->handle_admin("GET", "/admin/rollout", "");
    std::string reason;
    {
      std::lock_guard lock(state_mu);
      reason = not_ready_reason;
    }
    return {{"version", PIPELINED_VERSION},
            {"uptime_s", std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count()},
            {"config", config_path},
            {"ready", reason.empty() && plugins->current() != nullptr},
            {"not_ready_reason", reason},
            {"requests_in_flight", in_flight},
            {"plugins", plugins_json()},
            {"rollout", r.status == 200 ? r.body : json{{"error", r.body}}}};
  }

  // Loads plugins for `cfg`; on success the new set (and its config) serves new requests.
  std::pair<int, json> reload(std::shared_ptr<const config::Config> cfg, const std::vector<std::string>& only) {
    const auto errors = plugins->load(cfg, false, only);
    if (!errors.empty()) {
      for (const auto& e : errors) spdlog::error("reload refused: {}", e.to_string());
      json body = endpoint::error_body(422, "plugin reload refused; the running plugins keep serving");
      body["errors"] = load_errors_json(errors);
      return {422, body};
    }
    {
      std::lock_guard lock(state_mu);
      config = cfg;
      not_ready_reason.clear();
    }
    spdlog::info("plugins reloaded: generation {}", plugins->current()->generation);
    return {200, plugins_json()};
  }

  std::pair<int, json> reload_config() {
    auto loaded = config::load_file(config_path);
    if (!loaded.errors.empty()) {
      json errors = json::array();
      for (const auto& e : loaded.errors) {
        spdlog::error("config reload refused: {}", e.to_string());
        errors.push_back({{"file", e.file}, {"line", e.line}, {"column", e.column}, {"key", e.key}, {"message", e.message}});
      }
      json body = endpoint::error_body(422, "config reload refused; the running config stays");
      body["errors"] = errors;
      return {422, body};
    }
    auto result = reload(loaded.config, {});
    if (result.first != 200) return result;
    rollout->update_config(loaded.config);
#if PIPELINED_HAVE_OUTBOUND
    outbound->update_providers(loaded.config->providers);
#endif
    spdlog::info("config reloaded from {}", config_path);
    return result;
  }

  // ---- lifecycle ----

  void drain() {
    if (draining.exchange(true)) return;
    const auto timeout = current_config()->server.drain_timeout;
    spdlog::info("draining: no new connections; {} ms for requests in flight", timeout.count());
    frontend->stop_accepting();
    frontend->set_draining(true);
    std::thread([this, timeout] {
      const auto until = Clock::now() + timeout;
      auto busy = [this] {
        std::lock_guard lock(inflight_mu);
        return !inflight.empty() || frontend->in_flight() > 0 || background > 0;
      };
      while (busy() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (busy()) {
        std::lock_guard lock(inflight_mu);
        spdlog::warn("drain timeout: cancelling {} requests", inflight.size());
        for (auto& [id, flag] : inflight) flag->store(true);
      }
      const auto grace = Clock::now() + std::chrono::seconds(5);
      while (busy() && Clock::now() < grace) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      // Answers written by now have been handed to the sockets; give the I/O threads a moment.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (admin_unix) admin_unix->stop_accepting();
      if (admin_tcp) admin_tcp->stop_accepting();
      io.stop();
    }).detach();
  }

  void watch_signals(net::signal_set& signals) {
    signals.async_wait([this, &signals](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        spdlog::info("SIGHUP: reloading config and plugins");
        pool->submit([this] { reload_config(); });
      } else {
        spdlog::info("signal {}: stopping", signal);
        drain();
      }
      watch_signals(signals);
    });
  }
};

Daemon::Daemon(std::string config_path) : impl_(std::make_unique<Impl>(std::move(config_path))) {}

Daemon::~Daemon() = default;

std::uint16_t Daemon::port() const { return impl_->frontend->port(); }

int Daemon::run() {
  auto& d = *impl_;
  net::signal_set signals(d.io, SIGTERM, SIGINT, SIGHUP);
  d.watch_signals(signals);
  const auto cfg = d.current_config();
  std::printf("listening on %s:%u\n", cfg->server.listen_address.c_str(), static_cast<unsigned>(port()));
  if (d.admin_unix) std::printf("admin socket %s\n", cfg->admin.socket_path.c_str());
  if (d.admin_tcp) std::printf("admin on %s:%u\n", cfg->admin.tcp_address.c_str(), static_cast<unsigned>(d.admin_tcp->port()));
  std::printf("started\n");  // the last startup line: scripts and tests wait for it
  std::fflush(stdout);
  spdlog::info("pipelined {} serving {} endpoints on {}:{}", PIPELINED_VERSION, cfg->endpoints.size(), cfg->server.listen_address, port());

  std::vector<std::thread> threads;
  for (int i = 1; i < cfg->server.io_threads; ++i) threads.emplace_back([&d] { d.io.run(); });
  d.io.run();
  for (auto& t : threads) t.join();

  d.rollout->stop();  // every queued metrics row is written
  spdlog::info("stopped");
  return 0;
}

}  // namespace pipelined::server

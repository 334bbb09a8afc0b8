// The daemon's lifecycle: wire the components, start the listeners, reload, drain, stop. What a
// request does is in request_path.cpp; the routes are in frontend_routes.cpp and admin_routes.cpp.
#include "daemon/server/daemon.h"

#include <spdlog/spdlog.h>

#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "daemon/config/config.h"
#include "daemon/endpoint/endpoint.h"
#include "daemon/engine/engine.h"
#include "daemon/memory/memory_account.h"
#include "daemon/metrics/metrics.h"
#include "daemon/notify/notify.h"
#include "daemon/outbound/outbound.h"
#include "daemon/plugin_host/plugin_host.h"
#include "daemon/pool/worker_pool.h"
#include "daemon/server/admin_routes.h"
#include "daemon/server/crash_marker.h"
#include "daemon/server/frontend_routes.h"
#include "daemon/server/http_listener.h"
#include "daemon/server/metrics_routes.h"
#include "daemon/server/plugin_state.h"
#include "daemon/server/request_path.h"
#include "daemon/server/rollout_settings.h"
#include "rollout/rollout.h"

#ifndef PIPELINED_VERSION
#define PIPELINED_VERSION "0.0.0"
#endif

namespace pipelined::server {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

std::shared_ptr<const config::Config> load_config(const std::string& path) {
  auto loaded = config::load_file(path);
  if (loaded.errors.empty()) return loaded.config;
  std::string text = "invalid config:";
  for (const auto& e : loaded.errors) text += "\n  " + e.to_string();
  throw std::runtime_error(text);
}

}  // namespace

struct Daemon::Impl {
  std::string config_path;
  Clock::time_point started = Clock::now();

  std::unique_ptr<rollout::RolloutController> rollout;
  metrics::Registry metrics_registry;
  std::unique_ptr<metrics::RequestSeries> request_series;
  std::unique_ptr<RequestLog> request_log;
  // Destroyed in reverse: the outbound client first (it fails what is in flight, so pending plugin
  // runs complete), then the engine (it waits for them), then the pool they complete on.
  std::unique_ptr<pool::WorkerPool> pool;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<outbound::OutboundClient> outbound;
  std::unique_ptr<plugin_host::PluginHost> plugins;
  std::unique_ptr<RequestPath> requests;
  std::unique_ptr<FrontendRoutes> frontend_routes;
  std::unique_ptr<AdminRoutes> admin_routes;
  net::io_context io;
  std::unique_ptr<HttpListener> frontend, admin_unix, admin_tcp, metrics_listener;

  std::unique_ptr<PluginState> state;  // the running config and plugins, reloads, readiness
  std::atomic<bool> draining{false};

  explicit Impl(std::string path) : config_path(std::move(path)) {
    auto config = load_config(config_path);
    const std::string marker = config->state_directory + "/crash-marker";
    const auto crash_note = take_crash_marker(marker);
    install_crash_marker(marker);

    rollout = std::make_unique<rollout::RolloutController>(rollout_settings(*config));
    outbound = std::make_unique<outbound::OutboundClient>(config->providers, config->shared_limits);
    pool = std::make_unique<pool::WorkerPool>(config->worker_threads);
    engine = std::make_unique<engine::Engine>(*pool, outbound.get());
    plugins = std::make_unique<plugin_host::PluginHost>(engine->services());
    state = std::make_unique<PluginState>(config_path, config, *plugins, [this](const config::Config& c) {
      rollout->update_settings(rollout_settings(c));
      outbound->update_providers(c.providers);
    });
    state->load_initial();
    request_series = std::make_unique<metrics::RequestSeries>(metrics_registry);
    add_metric_collectors();
    if (!config->server.request_log.empty()) request_log = std::make_unique<RequestLog>(config->server.request_log);
    requests = std::make_unique<RequestPath>(*engine, *rollout, *request_series, request_log.get());
    frontend_routes = std::make_unique<FrontendRoutes>(
        *plugins, *requests, [this] { return state->not_ready(); }, config->server.demo);
    admin_routes = std::make_unique<AdminRoutes>(routes(), *pool);

    const auto& s = config->server;
    ListenerOptions front{s.body_limit_bytes, s.header_limit_bytes, s.read_timeout, s.idle_timeout, ""};
    frontend = std::make_unique<HttpListener>(io, front,
                                              [this](Request&& r, Reply reply) { frontend_routes->serve(std::move(r), std::move(reply)); });
    if (auto e = frontend->listen_tcp(s.listen_address, s.listen_port); !e.empty()) throw std::runtime_error(e);

    ListenerOptions admin{1 << 20, 16 << 10, s.read_timeout, s.idle_timeout, ""};
    auto admin_handler = [this](Request&& r, Reply reply) { admin_routes->serve(std::move(r), std::move(reply)); };
    if (!config->admin.socket_path.empty()) {
      admin_unix = std::make_unique<HttpListener>(io, admin, admin_handler);
      if (auto e = admin_unix->listen_unix(config->admin.socket_path); !e.empty()) throw std::runtime_error(e);
    }
    if (config->admin.tcp_port != 0 || !config->admin.tcp_address.empty()) {
      admin.bearer_token = config->admin.token;
      admin_tcp = std::make_unique<HttpListener>(io, admin, admin_handler);
      if (auto e = admin_tcp->listen_tcp(config->admin.tcp_address, config->admin.tcp_port); !e.empty()) throw std::runtime_error(e);
    }
    if (!config->metrics.listen_address.empty()) {
      ListenerOptions m{1 << 10, 16 << 10, s.read_timeout, s.idle_timeout, ""};
      metrics_listener = std::make_unique<HttpListener>(io, m, metrics_listener_handler(metrics_registry));
      if (auto e = metrics_listener->listen_tcp(config->metrics.listen_address, config->metrics.listen_port); !e.empty())
        throw std::runtime_error(e);
    }
    rollout->set_plugin_generation_source([this] {
      auto set = plugins->current();
      return static_cast<std::int64_t>(set ? set->generation : 0);
    });
    rollout->start(crash_note.value_or(""));
  }

  // Gauges read at scrape time from what the components already keep.
  void add_metric_collectors() {
    metrics_registry.add_collector([this](metrics::Scrape& out) {
      auto set = plugins->current();
      metrics::collect_process(requests->in_flight(), memory::process_rss_bytes(), set ? set->generation : 0, out);
      std::vector<std::string> pipelines;
      for (const auto& p : state->config()->pipelines) pipelines.push_back(p.name);
      metrics::collect_rollout(rollout->status(), pipelines, out);
      metrics::collect_outbound(outbound->stats(), out);
      metrics::collect_runners(plugins->describe(), out);
    });
  }

  std::vector<AdminRoute> routes() {
    auto table = rollout_routes(*rollout, [this](const std::string& pipeline, json& report) {
      const json& r = report["rollout"];
      report["memory_now"] = state->memory_json(pipeline, r.is_object() && r.contains("variants") ? r["variants"] : json());
    });
    table.push_back(metrics_admin_route(metrics_registry));
    table.push_back({"GET", "/admin/status", [this](const AdminCall&) { return AdminAnswer{200, status()}; }});
    table.push_back({"GET", "/admin/plugins", [this](const AdminCall&) { return AdminAnswer{200, state->plugins_json()}; }});
    table.push_back({"POST", "/admin/plugins/reload", [this](const AdminCall& call) {
                       std::vector<std::string> only;
                       const json& list = call.body.contains("plugins") ? call.body["plugins"] : json::array();
                       if (!list.is_array()) return admin_error(400, R"(expected {"plugins": ["name", ...]} or an empty body)");
                       for (const auto& p : list)
                         if (p.is_string()) only.push_back(p.get<std::string>());
                       return state->reload_plugins(only);
                     }});
    table.push_back({"POST", "/admin/config/reload", [this](const AdminCall&) { return state->reload_config(); }});
    return table;
  }

  json status() {
    const std::string reason = state->not_ready();
    return {{"version", PIPELINED_VERSION},
            {"uptime_s", std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count()},
            {"config", config_path},
            {"ready", reason.empty()},
            {"not_ready_reason", reason},
            {"requests_in_flight", requests->in_flight()},
            {"plugins", state->plugins_json()},
            {"rollout", rollout->status().to_json()}};
  }

  void drain() {
    if (draining.exchange(true)) return;
    notify::stopping();
    const auto timeout = state->config()->server.drain_timeout;
    spdlog::info("draining: no new connections; {} ms for requests in flight", timeout.count());
    frontend->stop_accepting();
    frontend->set_draining(true);
    requests->set_draining(true);
    std::thread([this, timeout] {
      auto busy = [this] { return requests->busy() || frontend->in_flight() > 0; };
      auto wait_until = [&](Clock::time_point until) {
        while (busy() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      };
      wait_until(Clock::now() + timeout);
      if (busy()) requests->cancel_all();
      wait_until(Clock::now() + std::chrono::seconds(5));
      // Answers written by now have been handed to the sockets; give the I/O threads a moment.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (admin_unix) admin_unix->stop_accepting();
      if (admin_tcp) admin_tcp->stop_accepting();
      if (metrics_listener) metrics_listener->stop_accepting();
      io.stop();
    }).detach();
  }

  void watch_signals(net::signal_set& signals) {
    signals.async_wait([this, &signals](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        spdlog::info("SIGHUP: reloading config and plugins");
        notify::reloading();
        pool->submit([this] {
          state->reload_config();
          notify::ready();  // the old or the new config serves either way
        });
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
  const auto cfg = d.state->config();
  std::printf("listening on %s:%u\n", cfg->server.listen_address.c_str(), static_cast<unsigned>(port()));
  if (d.admin_unix) std::printf("admin socket %s\n", cfg->admin.socket_path.c_str());
  if (d.admin_tcp) std::printf("admin on %s:%u\n", cfg->admin.tcp_address.c_str(), static_cast<unsigned>(d.admin_tcp->port()));
  if (d.metrics_listener)
    std::printf("metrics on %s:%u\n", cfg->metrics.listen_address.c_str(), static_cast<unsigned>(d.metrics_listener->port()));
  std::printf("started\n");  // the last startup line: scripts and tests wait for it
  std::fflush(stdout);
  spdlog::info("pipelined {} serving {} endpoints on {}:{}", PIPELINED_VERSION, cfg->endpoints.size(), cfg->server.listen_address, port());

  notify::ready();
  // WATCHDOG=1 only while a no-op handed to the worker pool completes in time.
  notify::Watchdog watchdog([&d](std::chrono::milliseconds timeout) {
    auto done = std::make_shared<std::promise<void>>();
    auto answered = done->get_future();
    d.pool->submit([done] { done->set_value(); });
    return answered.wait_for(timeout) == std::future_status::ready;
  });

  std::vector<std::thread> threads;
  for (int i = 1; i < cfg->server.io_threads; ++i) threads.emplace_back([&d] { d.io.run(); });
  d.io.run();
  for (auto& t : threads) t.join();

  d.rollout->stop();  // every queued metrics row is written
  spdlog::info("stopped");
  return 0;
}

}  // namespace pipelined::server

#include "daemon/server/frontend_routes.h"

#include <nlohmann/json.hpp>

#include "daemon/server/demo_page.h"

namespace pipelined::server {

namespace http = boost::beast::http;

FrontendRoutes::FrontendRoutes(plugin_host::PluginHost& plugins, RequestPath& requests, std::function<std::string()> not_ready, bool demo)
    : plugins_(plugins), requests_(requests), not_ready_(std::move(not_ready)), demo_(demo) {}

void FrontendRoutes::serve(Request&& req, Reply reply) const {
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  const std::string_view target = req.target();
  const std::string path(target.substr(0, target.find('?')));
  const bool get = req.method() == http::verb::get;
  if (path == "/healthz" && get) return reply(json_response(version, keep_alive, 200, R"({"status":"alive"})"));
  if (path == "/readyz" && get) {
    const std::string reason = not_ready_();
    if (reason.empty()) return reply(json_response(version, keep_alive, 200, R"({"status":"ready"})"));
    return reply(json_response(version, keep_alive, 503, nlohmann::json{{"status", "not ready"}, {"reason", reason}}.dump()));
  }
  if (demo_ && get && (path == "/demo" || path == "/demo/")) {
    if (path == "/demo") {  // the page's relative links need the slash
      Response r{http::status::moved_permanently, version};
      r.set(http::field::location, "/demo/");
      r.keep_alive(keep_alive);
      r.prepare_payload();
      return reply(std::move(r));
    }
    Response r{http::status::ok, version};
    r.set(http::field::content_type, "text/html; charset=utf-8");
    r.set(http::field::cache_control, "no-cache");
    r.keep_alive(keep_alive);
    r.body() = demo_page_html();
    r.prepare_payload();
    return reply(std::move(r));
  }
  auto set = plugins_.current();
  if (!set) return reply(error_response(version, keep_alive, 503, "plugins are not loaded: " + not_ready_()));
  const config::EndpointConfig* endpoint = nullptr;
  std::string allow;
  for (const auto& e : set->config->endpoints) {
    if (e.path != path) continue;
    allow += (allow.empty() ? "" : ", ") + e.method;
    if (e.method == req.method_string()) endpoint = &e;
  }
  if (endpoint == nullptr) {
    if (allow.empty()) return reply(error_response(version, keep_alive, 404, "no endpoint " + path));
    auto r = error_response(version, keep_alive, 405, std::string(req.method_string()) + " is not allowed on " + path);
    r.set(http::field::allow, allow);
    return reply(std::move(r));
  }
  requests_.serve(std::move(req), std::move(reply), std::move(set), *endpoint);
}

}  // namespace pipelined::server

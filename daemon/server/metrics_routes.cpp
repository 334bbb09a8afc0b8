#include "daemon/server/metrics_routes.h"

namespace pipelined::server {

namespace http = boost::beast::http;

Handler metrics_listener_handler(const metrics::Registry& registry) {
  return [&registry](Request&& req, Reply reply) {
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const std::string target(req.target());
    if (target.substr(0, target.find('?')) != "/metrics") return reply(error_response(version, keep_alive, 404, "only GET /metrics here"));
    if (req.method() != http::verb::get) {
      auto r = error_response(version, keep_alive, 405, "only GET /metrics here");
      r.set(http::field::allow, "GET");
      return reply(std::move(r));
    }
    auto r = json_response(version, keep_alive, 200, registry.render());
    r.set(http::field::content_type, kMetricsContentType);
    reply(std::move(r));
  };
}

AdminRoute metrics_admin_route(const metrics::Registry& registry) {
  return {"GET", "/metrics", [&registry](const AdminCall&) { return AdminAnswer{200, {}, registry.render(), kMetricsContentType}; }};
}

}  // namespace pipelined::server

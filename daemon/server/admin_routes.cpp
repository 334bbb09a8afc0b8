#include "daemon/server/admin_routes.h"

#include "daemon/endpoint/endpoint.h"

namespace pipelined::server {

using nlohmann::json;

AdminAnswer admin_error(int status, const std::string& message) { return {status, endpoint::error_body(status, message)}; }

std::string AdminCall::query(const std::string& name) const {
  const auto q = target.find('?');
  if (q == std::string::npos) return "";
  const std::string rest = target.substr(q + 1);
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto amp = rest.find('&', pos);
    const std::string pair = rest.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string::npos ? "" : pair.substr(eq + 1);
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return "";
}

AdminRoutes::AdminRoutes(std::vector<AdminRoute> routes, pool::WorkerPool& pool) : routes_(std::move(routes)), pool_(pool) {}

void AdminRoutes::serve(Request&& req, Reply reply) const {
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  auto send = [reply, version, keep_alive](const AdminAnswer& a) {
    if (a.content_type.empty())
      return reply(json_response(version, keep_alive, a.status, a.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    auto r = json_response(version, keep_alive, a.status, a.text);
    r.set(boost::beast::http::field::content_type, a.content_type);
    reply(std::move(r));
  };
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const std::string method(req.method_string());
  std::string allow;
  for (const auto& route : routes_) {
    if (route.path != path) continue;
    if (route.method != method) {
      allow += (allow.empty() ? "" : ", ") + route.method;
      continue;
    }
    AdminCall call{target, json::object()};
    if (method == "POST" && !req.body().empty()) {
      call.body = json::parse(req.body(), nullptr, false);
      if (call.body.is_discarded() || !call.body.is_object()) return send(admin_error(400, "the body must be a JSON object"));
    }
    pool_.submit([handler = route.handler, call = std::move(call), send] {
      try {
        send(handler(call));
      } catch (const std::exception& e) {
        send(admin_error(500, std::string("admin request failed: ") + e.what()));
      }
    });
    return;
  }
  if (allow.empty()) return send(admin_error(404, "no admin route " + method + " " + path));
  auto r = json_response(
      version, keep_alive, 405,
      endpoint::error_body(405, method + " is not allowed on " + path).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  r.set(boost::beast::http::field::allow, allow);
  reply(std::move(r));
}

}  // namespace pipelined::server

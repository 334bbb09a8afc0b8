// The frontend listener's routes: GET /healthz, GET /readyz, GET /demo/ when server.demo is on, and
// the configured endpoints (method and path from the running config), each handed to the request
// path. Nothing under /admin.
#pragma once

#include <functional>
#include <string>

#include "daemon/plugin_host/plugin_host.h"
#include "daemon/server/http_listener.h"
#include "daemon/server/request_path.h"

namespace pipelined::server {

class FrontendRoutes {
 public:
  // `not_ready` returns "" when the daemon is ready, else why not. `demo`: serve the demo page.
  FrontendRoutes(plugin_host::PluginHost& plugins, RequestPath& requests, std::function<std::string()> not_ready, bool demo = false);
  void serve(Request&& request, Reply reply) const;

 private:
  plugin_host::PluginHost& plugins_;
  RequestPath& requests_;
  std::function<std::string()> not_ready_;
  bool demo_;
};

}  // namespace pipelined::server

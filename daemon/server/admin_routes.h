// The admin surface as one table of {method, path, handler}, served only on the admin listeners
// (Unix socket, or loopback TCP with a token): the frontend listener has no route to it. A handler
// runs on the worker pool, since most touch SQLite or load plugins.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "daemon/pool/worker_pool.h"
#include "daemon/server/http_listener.h"
#include "rollout/rollout.h"

namespace pipelined::server {

struct AdminAnswer {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
  std::string text;          // with content_type: the body instead of `body` (GET /metrics)
  std::string content_type;
};

struct AdminCall {
  std::string target;                                // path and query
  nlohmann::json body;                               // the parsed JSON body of a POST ({} when empty)
  std::string query(const std::string& name) const;  // "" when absent
};

struct AdminRoute {
  std::string method;
  std::string path;
  std::function<AdminAnswer(const AdminCall&)> handler;
};

// Adds what the process holds now to a report's pipeline (name, its JSON): the report's figures
// come from SQLite rows, instance memory and runner RSS only from the running daemon.
using ReportAnnotator = std::function<void(const std::string& pipeline, nlohmann::json& report)>;

// Routes under /admin/rollout and /admin/report: typed RolloutController calls (admin_rollout.cpp).
std::vector<AdminRoute> rollout_routes(rollout::RolloutController& rollout, ReportAnnotator annotate_report);

class AdminRoutes {
 public:
  AdminRoutes(std::vector<AdminRoute> routes, pool::WorkerPool& pool);
  // 404 for an unknown path, 405 with Allow for a known path and another method, 400 for a body
  // that is not a JSON object.
  void serve(Request&& request, Reply reply) const;

 private:
  std::vector<AdminRoute> routes_;
  pool::WorkerPool& pool_;
};

AdminAnswer admin_error(int status, const std::string& message);

}  // namespace pipelined::server

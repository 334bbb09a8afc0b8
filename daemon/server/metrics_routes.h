// GET /metrics: the handler of the optional metrics listener (that path and nothing else) and the
// same answer as an admin route.
#pragma once

#include "daemon/metrics/metrics.h"
#include "daemon/server/admin_routes.h"
#include "daemon/server/http_listener.h"

namespace pipelined::server {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// The metrics listener's handler; answers on the I/O thread (rendering reads atomics only).
Handler metrics_listener_handler(const metrics::Registry& registry);
AdminRoute metrics_admin_route(const metrics::Registry& registry);

}  // namespace pipelined::server

// json_response and error_response (declared in http_listener.h), in a file of their own: everything
// that answers a request uses them, and the fuzz build links them without compiling the listener
// (under fuzzer instrumentation http_listener.cpp alone took ten minutes to compile).
#include <nlohmann/json.hpp>

#include "daemon/server/http_listener.h"

namespace pipelined::server {

namespace http = boost::beast::http;

Response json_response(unsigned version, bool keep_alive, int status, const std::string& body) {
  Response r{static_cast<http::status>(status), version};
  r.set(http::field::content_type, "application/json");
  r.keep_alive(keep_alive);
  r.body() = body;
  r.prepare_payload();
  return r;
}

Response error_response(unsigned version, bool keep_alive, int status, const std::string& message) {
  nlohmann::json body = {{"error", {{"status", status}, {"message", message}}}};
  // The message may quote request bytes (a path, a content type) that are not UTF-8: replaced, not thrown on.
  return json_response(version, keep_alive, status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace pipelined::server

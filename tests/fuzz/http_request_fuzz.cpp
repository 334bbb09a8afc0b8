// Fuzzes raw bytes into the frontend HTTP listener's path (daemon/server/http_listener.cpp and
// what it hands requests to). Session reads each request with Beast's request_parser under the
// configured header and body limits (async_read_header, then async_read), answers read errors as
// fail_read does, then the handler routes it (FrontendRoutes::serve) and RequestPath::serve turns
// it into pipeline input: event-stream negotiation, request id, build_input, sticky key, forced arm.
// Those functions are called here on the parsed request, synchronously over the input bytes, with
// the endpoints of configs/default.yaml plus a JSON one; only the engine run is left out (it never
// sees the raw request). Keep-alive: several requests in one input are read one after another.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon/config/config.h"
#include "daemon/endpoint/endpoint.h"
#include "daemon/server/admin_routes.h"
#include "daemon/server/event_stream.h"
#include "daemon/server/http_listener.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

namespace {

// A SyncReadStream over the fuzz input, handing it out in small reads as a socket would, so the
// parser sees requests split across reads. End of input is end of stream (the client closed).
class InputStream {
 public:
  InputStream(const std::uint8_t* data, std::size_t size) : data_(data), left_(size) {}
  template <class Buffers>
  std::size_t read_some(const Buffers& buffers, beast::error_code& ec) {
    if (left_ == 0) {
      ec = net::error::eof;
      return 0;
    }
    ec = {};
    const std::size_t n = net::buffer_copy(buffers, net::buffer(data_, std::min<std::size_t>(left_, 1 + data_[0] % 97)));
    data_ += n;
    left_ -= n;
    return n;
  }
  template <class Buffers>
  std::size_t read_some(const Buffers& buffers) {
    beast::error_code ec;
    const std::size_t n = read_some(buffers, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }

 private:
  const std::uint8_t* data_;
  std::size_t left_;
};

std::shared_ptr<const config::Config> load_config() {
  auto loaded = config::load_file(PIPELINED_SOURCE_DIR "/configs/default.yaml");
  if (!loaded.errors.empty()) fuzz::fail("configs/default.yaml: " + loaded.errors.front().to_string());
  auto c = std::make_shared<config::Config>(*loaded.config);
  config::EndpointConfig json_endpoint;  // a JSON endpoint too: the default config has only uploads
  json_endpoint.path = "/v1/echo";
  json_endpoint.pipeline = "menu";
  json_endpoint.response = {{"out", "$stages.images"}, {"id", "$meta.request_id"}};
  c->endpoints.push_back(json_endpoint);
  c->rollout.sticky_key = "cookie:uid";
  return c;
}

// FrontendRoutes::serve's routing and RequestPath::serve up to the engine run.
server::Response dispatch(const config::Config& c, server::Request& req) {
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  const std::string_view target = req.target();
  const std::string path(target.substr(0, target.find('?')));
  if (path == "/healthz" && req.method() == http::verb::get)
    return server::json_response(version, keep_alive, 200, R"({"status":"alive"})");
  const config::EndpointConfig* endpoint = nullptr;
  for (const auto& e : c.endpoints)
    if (e.path == path && e.method == req.method_string()) endpoint = &e;
  if (endpoint == nullptr) {
    // The admin listener's query parsing runs on the same targets (admin_routes.cpp).
    server::AdminCall call{std::string(target), {}};
    call.query("pipeline");
    call.query("since");
    return server::error_response(version, keep_alive, 404, "no endpoint " + path);
  }
  const bool stream = endpoint->streaming && server::wants_event_stream(req) && version >= 11;
  std::string request_id(req["X-Request-Id"]);
  if (request_id.empty() || request_id.size() > 128) request_id = "fuzz-1";
  auto input = endpoint::build_input(*endpoint, req[http::field::content_type], req.body());
  if (auto* e = std::get_if<endpoint::HttpError>(&input)) {
    if (stream) server::sse_event("error", endpoint::error_body(e->status, e->message));
    return server::error_response(version, keep_alive, e->status, e->message);
  }
  auto header = [&req](std::string_view n) { return std::string(req[n]); };
  const std::string key = endpoint::sticky_key(c.rollout.sticky_key, header, std::get<engine::Payload>(input));
  header("X-Pipelined-Arm");
  auto r = server::json_response(version, keep_alive, 200, std::get<engine::Payload>(input).json.dump() + key);
  r.set("X-Request-Id", request_id);
  return r;
}

}  // namespace

// event_stream.cpp's EventStream::progress names stage states with engine.cpp's to_string; linking
// the engine for it would build the plugin host, the outbound client and more. The target never
// reports progress (no engine run), so this stands in and says so if that ever changes.
const char* pipelined::engine::to_string(engine::StageStatus) { fuzz::fail("EventStream::progress is not fuzzed"); }

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto config = load_config();
  if (size == 0) return 0;
  InputStream stream(data, size);
  beast::flat_buffer buffer;
  for (int requests = 0; requests < 8; ++requests) {  // one keep-alive connection
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(config->server.header_limit_bytes));
    parser.body_limit(config->server.body_limit_bytes);
    beast::error_code ec;
    http::read_header(stream, buffer, parser, ec);
    if (!ec) http::read(stream, buffer, parser, ec);
    server::Response response;
    if (ec) {
      // Session::fail_read: limits and malformed requests are answered, then the connection closes.
      const unsigned version = parser.is_header_done() ? parser.get().version() : 11;
      if (ec == http::error::header_limit)
        response = server::error_response(version, false, 431, "request header fields too large");
      else if (ec == http::error::body_limit)
        response = server::error_response(version, false, 413, "request body too large");
      else if (ec == http::error::end_of_stream || ec == net::error::eof || ec == http::error::partial_message)
        break;
      else
        response = server::error_response(version, false, 400, "malformed HTTP request: " + ec.message());
    } else {
      server::Request req = parser.release();
      response = dispatch(*config, req);
    }
    // Session::send writes it with Beast's serializer.
    std::ostringstream wire;
    wire << response;
    if (ec || response.need_eof()) break;
  }
  return 0;
}

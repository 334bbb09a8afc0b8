// An asynchronous HTTP/1.1 listener (Boost.Beast) on loopback/any TCP address or a Unix socket.
// Keep-alive, header and body limits (431, 413), a read timeout for a whole request and an idle
// timeout between keep-alive requests, so slow or silent clients cannot hold connections. The
// handler answers through a reply callback that may run later on any thread, exactly once.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace pipelined::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
using Reply = std::function<void(Response)>;
using Handler = std::function<void(Request&& request, Reply reply)>;

struct ListenerOptions {
  std::size_t body_limit = 20 << 20;
  std::size_t header_limit = 16 << 10;
  std::chrono::milliseconds read_timeout{30000};
  std::chrono::milliseconds idle_timeout{60000};
  std::string bearer_token;  // non-empty: every request needs "Authorization: Bearer <token>"
};

// A JSON response: {"error": {"status": N, "message": "..."}} for errors.
Response json_response(unsigned version, bool keep_alive, int status, const std::string& body);
Response error_response(unsigned version, bool keep_alive, int status, const std::string& message);

class HttpListener {
 public:
  HttpListener(boost::asio::io_context& io, ListenerOptions options, Handler handler);
  ~HttpListener();

  // Both return "" on success, else why listening failed.
  std::string listen_tcp(const std::string& address, std::uint16_t port);
  // Creates the parent directory, replaces a stale socket file, and leaves the socket mode 0600.
  std::string listen_unix(const std::string& path);

  std::uint16_t port() const;  // the bound TCP port (useful with port 0)

  // Stops accepting new connections; open connections keep being served.
  void stop_accepting();
  // While draining, requests get 503 with Connection: close.
  void set_draining(bool draining);
  // Requests handed to the handler whose reply has not been sent yet.
  std::size_t in_flight() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace pipelined::server

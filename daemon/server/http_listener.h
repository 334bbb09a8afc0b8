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
using ResponseHeader = boost::beast::http::response<boost::beast::http::empty_body>;

// A response body written in pieces (chunked transfer coding), for server-sent events. Calls may
// come from any thread; the writes happen on the connection's strand, in call order. The
// connection closes after the last chunk: a streamed response is the connection's last.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  // Queues `data` as one chunk; dropped after end() or once the client is gone.
  virtual void write(std::string data) = 0;
  // Queues the last chunk. Call exactly once, also after the client went away: it ends the request.
  virtual void end() = 0;
};

struct StreamOptions {
  // Written whenever nothing else was for this long, so proxies and the client see a live stream.
  std::chrono::milliseconds heartbeat_every{15000};
  std::string heartbeat;  // empty: none
  // Runs once, on the connection's strand, when the client disconnects before end() was written.
  std::function<void()> on_gone;
};

// How a handler answers: call it with a whole response, or stream() one; exactly one of the two,
// exactly once, from any thread, possibly later.
class Reply {
 public:
  using Send = std::function<void(Response)>;
  using Open = std::function<std::shared_ptr<ResponseStream>(ResponseHeader, StreamOptions)>;
  Reply() = default;
  Reply(Send send, Open open) : send_(std::move(send)), open_(std::move(open)) {}

  void operator()(Response response) const { send_(std::move(response)); }
  // Sends `header` (made chunked, Connection: close) and returns the stream for the body.
  std::shared_ptr<ResponseStream> stream(ResponseHeader header, StreamOptions options) const {
    return open_(std::move(header), std::move(options));
  }

 private:
  Send send_;
  Open open_;
};

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

#include "daemon/server/http_listener.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <array>
#include <deque>
#include <filesystem>
#include <optional>

namespace pipelined::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using unix_socket = net::local::stream_protocol;

struct HttpListener::State {
  net::io_context& io;
  ListenerOptions options;
  Handler handler;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> in_flight{0};
  std::optional<tcp::acceptor> tcp_acceptor;
  std::optional<unix_socket::acceptor> unix_acceptor;
  std::string unix_path;
  std::uint16_t port = 0;

  State(net::io_context& i, ListenerOptions o, Handler h) : io(i), options(std::move(o)), handler(std::move(h)) {}
};

namespace {

template <class Protocol>
class Session : public std::enable_shared_from_this<Session<Protocol>> {
 public:
  Session(typename Protocol::socket socket, std::shared_ptr<HttpListener::State> state)
      : stream_(std::move(socket)), state_(std::move(state)) {}

  void start() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->read_header(); });
  }

 private:
  // The first request of a connection must arrive within the read timeout; later ones on a
  // keep-alive connection get the idle timeout to start and the read timeout to finish.
  void read_header() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_->options.header_limit));
    parser_->body_limit(state_->options.body_limit);
    stream_.expires_after(first_ ? state_->options.read_timeout : state_->options.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  bool fail_read(beast::error_code ec) {
    if (!ec) return false;
    const unsigned version = parser_ && parser_->is_header_done() ? parser_->get().version() : 11;
    if (ec == http::error::header_limit) {
      send(error_response(version, false, 431, "request header fields too large"));
    } else if (ec == http::error::body_limit) {
      send(error_response(version, false, 413, "request body larger than " + std::to_string(state_->options.body_limit) + " bytes"));
    } else if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
               ec == net::error::connection_reset || ec == net::error::eof || ec == http::error::partial_message) {
      close();  // the client went away, or was too slow: nobody to answer
    } else {
      send(error_response(version, false, 400, "malformed HTTP request: " + ec.message()));
    }
    return true;
  }

  void on_header(beast::error_code ec) {
    if (fail_read(ec)) return;
    stream_.expires_after(state_->options.read_timeout);
    auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, req.version());
      http::async_write(stream_, *cont, [self = this->shared_from_this(), cont](beast::error_code wec, std::size_t) {
        if (wec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_request(ec); });
  }

  void on_request(beast::error_code ec) {
    if (fail_read(ec)) return;
    Request req = parser_->release();
    parser_.reset();
    const unsigned version = req.version();
    if (state_->draining) return send(error_response(version, false, 503, "server is shutting down"));
    if (!state_->options.bearer_token.empty() &&
        req[http::field::authorization] != "Bearer " + state_->options.bearer_token) {
      return send(error_response(version, req.keep_alive(), 401, "missing or wrong bearer token"));
    }
    stream_.expires_never();  // the pipeline has its own deadline
    ++state_->in_flight;
    auto send = [self = this->shared_from_this()](Response response) {
      net::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        --self->state_->in_flight;
        self->send(std::move(response));
      });
    };
    auto open = [self = this->shared_from_this()](ResponseHeader header, StreamOptions options) -> std::shared_ptr<ResponseStream> {
      net::post(self->stream_.get_executor(), [self, header = std::move(header), options = std::move(options)]() mutable {
        self->open_stream(std::move(header), std::move(options));
      });
      return std::make_shared<Chunks>(self);
    };
    Reply reply(std::move(send), std::move(open));
    try {
      state_->handler(std::move(req), std::move(reply));
    } catch (const std::exception& e) {
      // The handler must not throw; if it does, this request is answered and the server goes on.
      spdlog::error("http: handler threw: {}", e.what());
      --state_->in_flight;
      send(error_response(version, false, 500, "internal error"));
    }
  }

  void send(Response response) {
    if (state_->draining) response.keep_alive(false);
    auto shared = std::make_shared<Response>(std::move(response));
    stream_.expires_after(state_->options.read_timeout);
    http::async_write(stream_, *shared, [self = this->shared_from_this(), shared](beast::error_code ec, std::size_t) {
      if (ec || shared->need_eof()) return self->close();
      self->first_ = false;
      self->read_header();
    });
  }

  // ---- a streamed response (Reply::stream): header, chunks in order, last chunk, close ----

  // The handle the handler writes through; every call hops to the strand, where the state lives.
  class Chunks : public ResponseStream {
   public:
    explicit Chunks(std::shared_ptr<Session> session) : session_(std::move(session)) {}
    void write(std::string data) override {
      net::post(session_->stream_.get_executor(), [s = session_, data = std::move(data)]() mutable { s->queue_chunk(std::move(data)); });
    }
    void end() override {
      net::post(session_->stream_.get_executor(), [s = session_] { s->end_stream(); });
    }

   private:
    std::shared_ptr<Session> session_;
  };

  void open_stream(ResponseHeader header, StreamOptions options) {
    header.chunked(true);
    header.keep_alive(false);
    stream_header_.emplace(std::move(header));
    serializer_.emplace(*stream_header_);
    stream_options_ = std::move(options);
    heartbeat_.emplace(stream_.get_executor());
    watch_peer();
    arm_heartbeat();
    pump();
  }

  void queue_chunk(std::string data) {
    if (stream_gone_ || stream_ending_ || data.empty()) return;
    chunks_.push_back(std::move(data));
    pump();
  }

  void end_stream() {
    if (stream_ending_) return;
    stream_ending_ = true;
    --state_->in_flight;
    stream_options_.on_gone = nullptr;  // it may hold what holds this session
    if (heartbeat_) heartbeat_->cancel();
    if (stream_gone_) return close();
    pump();
  }

  // The client closing its side (or resetting) while events are still coming: a read on the raw
  // socket completes. Bytes it sends meanwhile (a pipelined request) are dropped: the connection
  // closes after this response.
  void watch_peer() {
    stream_.socket().async_read_some(net::buffer(peer_bytes_), [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (!ec) return self->watch_peer();
      self->peer_gone();
    });
  }

  void peer_gone() {
    if (stream_gone_ || stream_done_) return;
    stream_gone_ = true;
    chunks_.clear();
    if (heartbeat_) heartbeat_->cancel();
    if (auto on_gone = std::move(stream_options_.on_gone)) on_gone();
    stream_options_.on_gone = nullptr;
    if (!writing_) close();
  }

  // Due when the stream has been quiet for heartbeat_every since its last write; while a write is
  // under way (a slow client) it looks again a whole interval later instead of spinning.
  void arm_heartbeat() {
    if (stream_options_.heartbeat.empty() || stream_options_.heartbeat_every.count() <= 0) return;
    const auto now = std::chrono::steady_clock::now();
    auto due = last_write_ + stream_options_.heartbeat_every;
    if (writing_ || !chunks_.empty() || due <= now) due = now + stream_options_.heartbeat_every;
    heartbeat_->expires_at(due);
    heartbeat_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec || self->stream_gone_ || self->stream_ending_) return;
      if (!self->writing_ && self->chunks_.empty() &&
          std::chrono::steady_clock::now() - self->last_write_ >= self->stream_options_.heartbeat_every)
        self->queue_chunk(self->stream_options_.heartbeat);
      self->arm_heartbeat();
    });
  }

  // One write at a time, on the strand: the header, then each queued chunk, then the last chunk.
  void pump() {
    if (writing_ || stream_gone_ || stream_done_) return;
    auto done = [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      self->last_write_ = std::chrono::steady_clock::now();
      if (ec) return self->peer_gone();
      if (self->stream_gone_) return self->close();
      self->pump();
    };
    // A client that stops reading holds a write; past the read timeout the stream gives up on it.
    stream_.expires_after(state_->options.read_timeout);
    if (!serializer_->is_header_done()) {
      writing_ = true;
      return http::async_write_header(stream_, *serializer_, std::move(done));
    }
    if (!chunks_.empty()) {
      writing_ = true;
      current_chunk_ = std::move(chunks_.front());
      chunks_.pop_front();
      return net::async_write(stream_, http::make_chunk(net::buffer(current_chunk_)), std::move(done));
    }
    if (stream_ending_) {
      writing_ = true;
      stream_done_ = true;
      return net::async_write(stream_, http::make_chunk_last(), [self = this->shared_from_this()](beast::error_code, std::size_t) {
        self->writing_ = false;
        self->close();
      });
    }
    stream_.expires_never();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(net::socket_base::shutdown_send, ec);
    stream_.close();
  }

  beast::basic_stream<Protocol> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<HttpListener::State> state_;
  bool first_ = true;

  // A streamed response; strand only.
  std::optional<ResponseHeader> stream_header_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  StreamOptions stream_options_;
  std::optional<net::steady_timer> heartbeat_;
  std::deque<std::string> chunks_;
  std::string current_chunk_;  // the chunk being written
  std::array<char, 512> peer_bytes_{};
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
  bool writing_ = false;
  bool stream_ending_ = false;  // end() arrived
  bool stream_done_ = false;    // the last chunk is being written
  bool stream_gone_ = false;    // the client went away
};

template <class Protocol, class Acceptor>
void accept_loop(const std::shared_ptr<HttpListener::State>& state, Acceptor& acceptor) {
  acceptor.async_accept(net::make_strand(state->io), [state, &acceptor](beast::error_code ec, typename Protocol::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) std::make_shared<Session<Protocol>>(std::move(socket), state)->start();
    else spdlog::warn("http: accept failed: {}", ec.message());
    accept_loop<Protocol>(state, acceptor);
  });
}

}  // namespace

HttpListener::HttpListener(net::io_context& io, ListenerOptions options, Handler handler)
    : state_(std::make_shared<State>(io, std::move(options), std::move(handler))) {}

HttpListener::~HttpListener() { stop_accepting(); }

std::string HttpListener::listen_tcp(const std::string& address, std::uint16_t port) {
  beast::error_code ec;
  const auto ip = net::ip::make_address(address, ec);
  if (ec) return "bad listen address '" + address + "': " + ec.message();
  auto& acceptor = state_->tcp_acceptor.emplace(net::make_strand(state_->io));
  const tcp::endpoint endpoint(ip, port);
  if (acceptor.open(endpoint.protocol(), ec); ec) return "socket: " + ec.message();
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) return "cannot listen on " + address + ":" + std::to_string(port) + ": " + ec.message();
  if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) return "listen: " + ec.message();
  state_->port = acceptor.local_endpoint().port();
  accept_loop<tcp>(state_, acceptor);
  return "";
}

std::string HttpListener::listen_unix(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code fec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, fec);
  if (fs::exists(fs::symlink_status(path))) {
    // A socket file left by a daemon that did not stop cleanly is replaced; a live one is not.
    unix_socket::socket probe(state_->io);
    beast::error_code ec;
    probe.connect(unix_socket::endpoint(path), ec);
    if (!ec) return "admin socket " + path + " is in use by a running daemon";
    if (!fs::is_socket(fs::symlink_status(path))) return "admin socket path " + path + " exists and is not a socket";
    fs::remove(path, fec);
  }
  beast::error_code ec;
  auto& acceptor = state_->unix_acceptor.emplace(net::make_strand(state_->io));
  const mode_t old_mask = ::umask(0177);  // the socket is created 0600: only the daemon's user may connect
  acceptor.open(unix_socket(), ec);
  if (!ec) acceptor.bind(unix_socket::endpoint(path), ec);
  ::umask(old_mask);
  if (ec) return "cannot create admin socket " + path + ": " + ec.message();
  ::chmod(path.c_str(), 0600);
  if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) return "listen on " + path + ": " + ec.message();
  state_->unix_path = path;
  accept_loop<unix_socket>(state_, acceptor);
  return "";
}

std::uint16_t HttpListener::port() const { return state_->port; }

void HttpListener::stop_accepting() {
  auto state = state_;
  // Each acceptor is closed on its own strand, where its pending accept runs.
  if (state->tcp_acceptor) {
    net::dispatch(state->tcp_acceptor->get_executor(), [state] {
      beast::error_code ec;
      if (state->tcp_acceptor->is_open()) state->tcp_acceptor->close(ec);
    });
  }
  if (state->unix_acceptor) {
    net::dispatch(state->unix_acceptor->get_executor(), [state] {
      beast::error_code ec;
      if (!state->unix_acceptor->is_open()) return;
      state->unix_acceptor->close(ec);
      std::error_code fec;
      std::filesystem::remove(state->unix_path, fec);
    });
  }
}

void HttpListener::set_draining(bool draining) { state_->draining = draining; }

std::size_t HttpListener::in_flight() const { return state_->in_flight; }

}  // namespace pipelined::server

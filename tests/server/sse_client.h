// Test and benchmark client for server-sent events: one HTTP/1.1 POST with "Accept:
// text/event-stream", the response read incrementally (Beast's chunk callbacks), each event handed
// on as it arrives with its arrival time. Also reads a plain (non-streamed) answer.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace pipelined::testing {

struct SseEvent {
  std::string name;
  nlohmann::json data;
  std::chrono::steady_clock::time_point at;
};

struct SseResponse {
  int status = 0;
  std::string content_type;
  std::string request_id;
  std::vector<SseEvent> events;
  int keep_alives = 0;   // ": keep-alive" comments
  std::string body;      // a plain answer's body (streaming off)
  bool stopped = false;  // on_event asked to stop: the client closed the connection mid-stream
};

// A multipart/form-data body with one file part; returns {body, content type}.
inline std::pair<std::string, std::string> multipart_file(const std::string& field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  const std::string boundary = "sse-test-boundary-7c1f";
  std::string body = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + field + "\"; filename=\"" +
                     path.substr(path.rfind('/') + 1) + "\"\r\nContent-Type: image/png\r\n\r\n" + data.str() + "\r\n--" + boundary +
                     "--\r\n";
  return {std::move(body), "multipart/form-data; boundary=" + boundary};
}

// Posts `body` to 127.0.0.1:`port``target` asking for events. `on_event` returning false closes
// the connection at once (the client goes away).
inline SseResponse post_events(unsigned short port, const std::string& target, const std::string& body, const std::string& content_type,
                               const std::vector<std::pair<std::string, std::string>>& headers = {},
                               const std::function<bool(const SseEvent&)>& on_event = {}) {
  namespace net = boost::asio;
  namespace http = boost::beast::http;
  net::io_context io;
  net::ip::tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::accept, "text/event-stream");
  req.set(http::field::content_type, content_type);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  http::write(socket, req);

  SseResponse out;
  std::string text;  // event text not yet split
  auto split = [&] {
    for (std::size_t end; !out.stopped && (end = text.find("\n\n")) != std::string::npos;) {
      const std::string block = text.substr(0, end);
      text.erase(0, end + 2);
      SseEvent e{"message", nullptr, std::chrono::steady_clock::now()};
      std::string data;
      std::istringstream lines(block);
      for (std::string line; std::getline(lines, line);) {
        if (line == ": keep-alive") ++out.keep_alives;
        if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
        if (line.rfind("data: ", 0) == 0) data += line.substr(6);
      }
      if (data.empty()) continue;
      e.data = nlohmann::json::parse(data);
      out.events.push_back(e);
      if (on_event && !on_event(out.events.back())) out.stopped = true;
    }
  };
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  auto on_chunk = [&](std::uint64_t, boost::beast::string_view data, boost::beast::error_code&) {
    text.append(data.data(), data.size());
    split();
    return data.size();
  };
  parser.on_chunk_body(on_chunk);
  http::read_header(socket, buffer, parser);
  out.status = static_cast<int>(parser.get().result_int());
  out.content_type = std::string(parser.get()[http::field::content_type]);
  out.request_id = std::string(parser.get()["X-Request-Id"]);
  boost::beast::error_code ec;
  while (!parser.is_done() && !out.stopped) {
    http::read_some(socket, buffer, parser, ec);
    if (ec) break;
  }
  if (!parser.get().chunked()) out.body = parser.get().body();
  socket.close();
  return out;
}

}  // namespace pipelined::testing

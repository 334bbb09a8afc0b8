// Test harness: the real `pipelined` binary as a child process on an ephemeral port, and small
// synchronous HTTP clients (TCP and Unix socket) to talk to it.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

extern char** environ;

namespace pipelined::testing {

namespace net = boost::asio;
namespace http = boost::beast::http;
using HttpResponse = http::response<http::string_body>;

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/pipelined-test.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
    std::filesystem::permissions(path_, std::filesystem::perms(0755));
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// Copies a built test plugin into `dir` as <as>.so, atomically (temp file + rename), mode 0755.
inline void install_plugin(const std::string& dir, const std::string& plugin, const std::string& as = "") {
  namespace fs = std::filesystem;
  const fs::path target = fs::path(dir) / ((as.empty() ? plugin : as) + ".so");
  const fs::path temp = target.string() + ".tmp";
  fs::copy_file(fs::path(PIPELINED_TEST_PLUGIN_DIR) / (plugin + ".so"), temp, fs::copy_options::overwrite_existing);
  fs::permissions(temp, fs::perms(0755));
  fs::rename(temp, target);
}

class DaemonProcess {
 public:
  // Starts `pipelined --config <config_path>` and reads its startup lines up to "started". `binary`:
  // another build of the daemon than the tree's (tests/package runs the packaged one).
  explicit DaemonProcess(const std::string& config_path, const std::string& binary = PIPELINED_BINARY) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const char* argv[] = {binary.c_str(), "--config", config_path.c_str(), "--log-level", "warn", nullptr};
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, const_cast<char**>(argv), environ) != 0)
      throw std::runtime_error("cannot start " + binary);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    stdout_ = ::fdopen(out[0], "r");
    char line[512];
    while (std::fgets(line, sizeof line, stdout_) != nullptr) {
      const std::string l = line;
      if (l.rfind("listening on ", 0) == 0) port_ = static_cast<unsigned short>(std::stoi(l.substr(l.rfind(':') + 1)));
      if (l.rfind("admin on ", 0) == 0) admin_port_ = static_cast<unsigned short>(std::stoi(l.substr(l.rfind(':') + 1)));
      if (l.rfind("metrics on ", 0) == 0) metrics_port_ = static_cast<unsigned short>(std::stoi(l.substr(l.rfind(':') + 1)));
      if (l == "started\n") break;
    }
    if (port_ == 0) {
      stop(SIGKILL);
      throw std::runtime_error("pipelined did not report a listening port");
    }
  }

  ~DaemonProcess() {
    if (pid_ > 0) stop(SIGKILL);
    if (stdout_) std::fclose(stdout_);
  }

  unsigned short port() const { return port_; }
  unsigned short admin_port() const { return admin_port_; }
  unsigned short metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }

  void signal(int sig) const { ::kill(pid_, sig); }

  // Sends `sig` and waits for the exit; returns the exit code (128+signal when killed).
  int stop(int sig = SIGTERM, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, sig);
    const auto until = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

 private:
  pid_t pid_ = -1;
  FILE* stdout_ = nullptr;
  unsigned short port_ = 0, admin_port_ = 0, metrics_port_ = 0;
  int exit_code_ = -1;
};

// A keep-alive HTTP/1.1 client on one TCP connection.
class HttpClient {
 public:
  explicit HttpClient(unsigned short port) : socket_(io_) {
    socket_.connect({net::ip::make_address("127.0.0.1"), port});
  }

  HttpResponse request(http::verb method, const std::string& target, const std::string& body = "",
                       const std::string& content_type = "application/json",
                       const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty() || method == http::verb::post) req.set(http::field::content_type, content_type);
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    http::write(socket_, req);
    HttpResponse res;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(socket_, buffer_, parser);
    return parser.release();
  }

  net::ip::tcp::socket& socket() { return socket_; }

 private:
  net::io_context io_;
  net::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

// One request over the admin Unix socket.
inline HttpResponse admin_request(const std::string& socket_path, http::verb method, const std::string& target,
                                  const std::string& body = "") {
  net::io_context io;
  net::local::stream_protocol::socket socket(io);
  socket.connect(net::local::stream_protocol::endpoint(socket_path));
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(socket, req);
  boost::beast::flat_buffer buffer;
  HttpResponse res;
  http::read(socket, buffer, res);
  return res;
}

// The line of the admin listener's GET /metrics that starts with `series` (a name, or a name with
// its label set); "" when there is none.
inline std::string admin_metric(const std::string& socket_path, const std::string& series) {
  std::istringstream text(admin_request(socket_path, http::verb::get, "/metrics").body());
  for (std::string line; std::getline(text, line);)
    if (line.rfind(series, 0) == 0) return line;
  return "";
}

}  // namespace pipelined::testing

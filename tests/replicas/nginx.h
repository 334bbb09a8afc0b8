// Test harness: Debian's nginx (nginx-light, scripts/deps) as the load balancer in front of the
// replicas, on a free loopback port, as deploy/replicas/nginx-pipelined.conf sets it up: a request
// whose replica refuses or drops the connection is sent to the next one (non_idempotent: the
// pipelines' POSTs have no side effect but their cost), and nothing is buffered (server-sent events).
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/free_port.h"

namespace pipelined::testing {

class Nginx {
 public:
  Nginx(const std::filesystem::path& dir, const std::vector<int>& upstream_ports) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    std::filesystem::permissions(dir_, std::filesystem::perms(0755));
    port_ = free_loopback_port();
    std::string servers;
    for (int p : upstream_ports) servers += "    server 127.0.0.1:" + std::to_string(p) + " max_fails=1 fail_timeout=5s;\n";
    const std::string d = dir_.string();
    std::ofstream(dir_ / "nginx.conf") << "worker_processes 1;\ndaemon off;\npid " << d << "/nginx.pid;\nerror_log " << d
                                       << "/error.log warn;\nevents { worker_connections 512; }\nhttp {\n  access_log off;\n"
                                       << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n"
                                       << "  fastcgi_temp_path " << d << "/fastcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n"
                                       << "  scgi_temp_path " << d << "/scgi;\n"
                                       << "  upstream pipelined {\n"
                                       << servers << "    keepalive 16;\n  }\n"
                                       << "  server {\n    listen 127.0.0.1:" << port_ << ";\n    location / {\n"
                                       << "      proxy_pass http://pipelined;\n      proxy_http_version 1.1;\n"
                                       << "      proxy_set_header Connection \"\";\n      proxy_buffering off;\n"
                                       << "      proxy_next_upstream error timeout non_idempotent;\n      proxy_read_timeout 300s;\n"
                                       << "    }\n  }\n}\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string conf = (dir_ / "nginx.conf").string();
      ::execl("/usr/sbin/nginx", "nginx", "-p", d.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Ready when it accepts connections.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!accepts()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) throw std::runtime_error("nginx exited; see " + d + "/error.log");
      if (std::chrono::steady_clock::now() > until) throw std::runtime_error("nginx did not start; see " + d + "/error.log");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~Nginx() {
    ::kill(pid_, SIGQUIT);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  int port() const { return port_; }

 private:
  bool accepts() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace pipelined::testing

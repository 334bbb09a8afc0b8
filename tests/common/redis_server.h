// A throwaway redis-server for tests and benches: /usr/bin/redis-server on a free loopback port,
// no persistence, in a temporary directory. kill() stops it hard (SIGKILL, as a crash or a network
// cut looks to clients); start() runs it again on the same port, empty.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/free_port.h"

namespace pipelined::testing {

class RedisServer {
 public:
  static constexpr const char* kBinary = "/usr/bin/redis-server";

  RedisServer() : port_(free_loopback_port()) {
    char dir_template[] = "/tmp/pipelined-redis-XXXXXX";
    if (mkdtemp(dir_template) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    start();
  }
  ~RedisServer() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

  // Starts the server and waits (up to 5 s) until it accepts connections.
  void start() {
    if (pid_ > 0) return;
    if (access(kBinary, X_OK) != 0) throw std::runtime_error(std::string(kBinary) + " is not installed (scripts/deps)");
    std::vector<std::string> args = {kBinary,  "--port",    std::to_string(port_), "--bind", "127.0.0.1",
                                     "--save", "",          "--appendonly",        "no",     "--dir",
                                     dir_,     "--logfile", dir_ + "/redis.log"};
    std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe functions
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!accepts()) {
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("redis-server did not listen on port " + std::to_string(port_));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  bool accepts() const {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    return ok;
  }

  int port_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace pipelined::testing

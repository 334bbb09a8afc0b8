// provider-sim (provider-sim/) as a child process of a test, on an ephemeral loopback port it
// reports on its first stdout line. Its stdout is read to the end on a thread, so the sim never
// blocks on a full pipe however much it prints. SIGTERM and wait on destruction.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pipelined::testing {

class ProviderSimProcess {
 public:
  // args: provider-sim's options after "--port 0" (--time-scale, --fixtures, --seed, ...).
  explicit ProviderSimProcess(const std::vector<std::string>& args) {
    const std::string binary = std::string(PIPELINED_BINARY_DIR) + "/provider-sim/provider-sim";
    if (!std::filesystem::exists(binary)) throw std::runtime_error(binary + " is not built");
    std::vector<std::string> argv_s = {binary, "--port", "0"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe functions
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    // First stdout line: "listening on 127.0.0.1:PORT".
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (line.find('\n') == std::string::npos) {
      pollfd p{out[0], POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[256];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    const auto colon = line.rfind(':', line.find('\n'));
    if (line.rfind("listening on", 0) != 0 || colon == std::string::npos) {
      ::close(out[0]);
      stop();
      throw std::runtime_error("provider-sim did not say where it listens: '" + line + "'");
    }
    port_ = std::stoi(line.substr(colon + 1));
    drain_ = std::thread([fd = out[0]] {
      char buf[4096];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
      ::close(fd);
    });
  }
  ~ProviderSimProcess() { stop(); }
  ProviderSimProcess(const ProviderSimProcess&) = delete;
  ProviderSimProcess& operator=(const ProviderSimProcess&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    if (drain_.joinable()) drain_.join();
  }

  pid_t pid_ = -1;
  int port_ = 0;
  std::thread drain_;
};

}  // namespace pipelined::testing

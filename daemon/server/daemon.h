// The pipelined daemon: the frontend listener serving the configured endpoints, and the admin
// listener (Unix socket, optionally loopback TCP with a token) that the frontend cannot reach.
// A request's path: listener -> endpoint (input) -> rollout (arm) -> engine (stages on plugins)
// -> endpoint (response) -> rollout (record).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace pipelined::server {

class Daemon {
 public:
  // Throws std::runtime_error with a message for the operator when the config, the metrics
  // database or a listener cannot be set up.
  explicit Daemon(std::string config_path);
  ~Daemon();

  // Serves until SIGTERM or SIGINT, then drains (stop accepting, finish in-flight requests within
  // server.drain_timeout, cancel what is left, flush metrics) and returns the exit code (0).
  // SIGHUP reloads config and plugins.
  int run();

  // The bound frontend port (config port 0 binds an ephemeral one).
  std::uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::server

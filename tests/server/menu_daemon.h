// The pipelined binary on configs/default.yaml with provider-sim (tests/pipelines/harness.h) and
// the reference plugins: for tests and benchmarks that drive the real pipelines over HTTP.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/pipelines/harness.h"
#include "tests/server/daemon_process.h"

namespace pipelined::testing {

class MenuDaemon {
 public:
  // `sim_args`: provider-sim's options (--time-scale ...). `server_keys`: YAML lines added under
  // `server:` ("@DIR@" in them is the daemon's state directory). `endpoints`: YAML list items
  // appended to `endpoints:`. `edit`, when given, changes the config text last.
  MenuDaemon(std::vector<std::string> sim_args, const std::vector<std::string>& server_keys, const std::string& endpoints = "",
             const std::function<void(std::string&)>& edit = {})
      : sim_(std::move(sim_args)) {
    std::string yaml = harness::default_yaml(sim_, dir_.path());
    std::string listen = "listen: 127.0.0.1:0";
    for (const auto& key : server_keys) listen += "\n  " + key;
    harness::replace_all(listen, "@DIR@", dir_.path().string());
    harness::replace_all(yaml, "listen: 127.0.0.1:8080", listen);
    yaml += endpoints;
    if (edit) edit(yaml);
    write_file(dir_ / "config.yaml", yaml);
    daemon_ = std::make_unique<DaemonProcess>(dir_ / "config.yaml");
  }

  unsigned short port() const { return daemon_->port(); }
  pid_t pid() const { return daemon_->pid(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  const TempDir& dir() const { return dir_; }

  static std::string menu(const std::string& name) { return (harness::source_dir() / "tests/fixtures/menus" / (name + ".png")).string(); }

 private:
  TempDir dir_;  // before sim_: the sim stops first
  harness::ProviderSim sim_;
  std::unique_ptr<DaemonProcess> daemon_;
};

}  // namespace pipelined::testing

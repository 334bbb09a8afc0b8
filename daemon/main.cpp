// pipelined: serves pipeline endpoints from a YAML config, every stage from a plugin.
// Exit codes: 0 clean stop (or --check-config found no error), 1 could not start (listener,
// database, admin socket), 2 invalid config or command line.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>

#include "daemon/config/config.h"
#include "daemon/server/daemon.h"

int main(int argc, char** argv) {
  CLI::App app{"pipelined: multi-stage AI pipelines behind HTTP endpoints, every stage a hot-swappable plugin"};
  std::string config_path = "configs/default.yaml";
  bool check_only = false;
  std::string log_level = "info";
  app.add_option("-c,--config", config_path, "YAML config file")->capture_default_str();
  app.add_flag("--check-config", check_only, "validate the config, print every error, and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // Logs go to stderr; stdout carries only the "listening on" lines that scripts and tests read.
  spdlog::set_default_logger(spdlog::stderr_color_mt("pipelined"));
  spdlog::set_level(spdlog::level::from_str(log_level));

  if (check_only) {
    auto loaded = pipelined::config::load_file(config_path);
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    if (loaded.errors.empty()) std::printf("%s: ok\n", config_path.c_str());
    return loaded.errors.empty() ? 0 : 2;
  }
  // A file size limit (systemd's LimitFSIZE=, a quota) must fail the write that passes it, which the
  // metrics writer counts as a lost batch, not kill the daemon with SIGXFSZ's default action.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    pipelined::server::Daemon daemon(config_path);
    return daemon.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipelined: %s\n", e.what());
    return std::string_view(e.what()).rfind("invalid config", 0) == 0 ? 2 : 1;
  }
}

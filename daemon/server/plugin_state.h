// The running config and plugin set, and how they change: plugin reloads and config reloads, each
// refused whole (the running ones stay) when anything in them is wrong; readiness follows them.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/config/config.h"
#include "daemon/plugin_host/plugin_host.h"
#include "daemon/server/admin_routes.h"

namespace pipelined::server {

class PluginState {
 public:
  // `on_config` runs after a config reload loaded its plugins (rollout settings, providers).
  PluginState(std::string config_path, std::shared_ptr<const config::Config> config, plugin_host::PluginHost& plugins,
              std::function<void(const config::Config&)> on_config);

  // First load at start; failures leave the daemon not ready, with the reason.
  void load_initial();
  std::shared_ptr<const config::Config> config() const;
  std::string not_ready() const;  // "" when ready
  nlohmann::json plugins_json() const;
  // What a pipeline's loaded variants hold now, for a report: per variant its instance memory (what
  // create() kept: engines, pools) and, when isolated, its runner's RSS; `rollout_variants` (stage ->
  // variant, from the report's rollout) marks the candidate's variants.
  nlohmann::json memory_json(const std::string& pipeline, const nlohmann::json& rollout_variants) const;

  AdminAnswer reload_plugins(const std::vector<std::string>& only);
  AdminAnswer reload_config();

 private:
  AdminAnswer reload(std::shared_ptr<const config::Config> cfg, const std::vector<std::string>& only);
  void note_suspects();

  std::string config_path_;
  plugin_host::PluginHost& plugins_;
  std::function<void(const config::Config&)> on_config_;
  mutable std::mutex mu_;
  std::shared_ptr<const config::Config> config_;
  std::string not_ready_reason_;
};

}  // namespace pipelined::server

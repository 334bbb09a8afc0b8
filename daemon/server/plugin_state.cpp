#include "daemon/server/plugin_state.h"

#include <spdlog/spdlog.h>

#include "daemon/memory/memory_account.h"
#include "daemon/server/crash_marker.h"

namespace pipelined::server {

using nlohmann::json;

namespace {
AdminAnswer refused(int status, const std::string& message, json errors) {
  AdminAnswer a = admin_error(status, message);
  a.body["errors"] = std::move(errors);
  return a;
}
}  // namespace

PluginState::PluginState(std::string config_path, std::shared_ptr<const config::Config> config, plugin_host::PluginHost& plugins,
                         std::function<void(const config::Config&)> on_config)
    : config_path_(std::move(config_path)), plugins_(plugins), on_config_(std::move(on_config)), config_(std::move(config)) {}

void PluginState::load_initial() {
  if (const auto errors = plugins_.load(config()); !errors.empty()) {
    std::string text;
    for (const auto& e : errors) {
      spdlog::error("plugin refused: {}", e.to_string());
      text += (text.empty() ? "" : "; ") + e.to_string();
    }
    std::lock_guard lock(mu_);
    not_ready_reason_ = "plugins not loaded: " + text;
  }
  note_suspects();
}

std::shared_ptr<const config::Config> PluginState::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

std::string PluginState::not_ready() const {
  {
    std::lock_guard lock(mu_);
    if (!not_ready_reason_.empty()) return not_ready_reason_;
  }
  return plugins_.current() ? "" : "no plugins loaded";
}

json PluginState::plugins_json() const {
  json list = json::array();
  for (const auto& p : plugins_.describe()) {
    json entry = {{"pipeline", p.pipeline},
                  {"stage", p.stage},
                  {"variant", p.variant},
                  {"plugin", p.plugin_name},
                  {"version", p.plugin_version},
                  {"file", p.file},
                  {"generation", p.generation},
                  {"isolation", p.isolated ? "process" : "in_process"},
                  {"instance_bytes", p.instance_bytes}};
    if (p.isolated)
      entry["runner"] = {{"up", p.runner.up},
                         {"pid", p.runner.pid},
                         {"rss_bytes", p.runner.rss_bytes},
                         {"crashes", p.runner.crashes},
                         {"restarts", p.runner.restarts},
                         {"runs_in_flight", p.runner.runs_in_flight},
                         {"last_crash", p.runner.last_crash}};
    list.push_back(std::move(entry));
  }
  auto set = plugins_.current();
  return {{"generation", set ? set->generation : 0}, {"plugins", list}, {"retired_libraries", plugins_.retired_libraries()}};
}

json PluginState::memory_json(const std::string& pipeline, const json& rollout_variants) const {
  const auto cfg = config();
  const auto* pc = cfg->pipeline(pipeline);
  json variants = json::array();
  for (const auto& p : plugins_.describe()) {
    if (p.pipeline != pipeline) continue;
    const auto* sc = pc ? pc->stage(p.stage) : nullptr;
    std::string role = "other";
    if (sc != nullptr && sc->stable == p.variant)
      role = "stable";
    else if (rollout_variants.is_object() && rollout_variants.value(p.stage, "") == p.variant)
      role = "candidate";
    json v = {{"stage", p.stage},
              {"variant", p.variant},
              {"role", role},
              {"isolation", p.isolated ? "process" : "in_process"},
              {"instance_bytes", p.instance_bytes}};
    if (p.isolated) v["runner_rss_bytes"] = p.runner.rss_bytes;
    variants.push_back(std::move(v));
  }
  return {{"daemon_rss_bytes", memory::process_rss_bytes()}, {"variants", std::move(variants)}};
}

// The non-stable plugins loaded in this process now: what a crash marker names (an isolated one
// cannot take the daemon down).
void PluginState::note_suspects() {
  const auto cfg = config();
  std::string text;
  for (const auto& p : plugins_.describe()) {
    const auto* pc = cfg->pipeline(p.pipeline);
    const auto* sc = pc ? pc->stage(p.stage) : nullptr;
    if (sc != nullptr && sc->stable != p.variant && !p.isolated)
      text += (text.empty() ? "" : ", ") + p.pipeline + "/" + p.stage + "/" + p.variant + " (" + p.file + ")";
  }
  set_crash_suspects(text);
}

AdminAnswer PluginState::reload_plugins(const std::vector<std::string>& only) { return reload(config(), only); }

// Loads plugins for `cfg`; on success the new set (and its config) serves new requests.
AdminAnswer PluginState::reload(std::shared_ptr<const config::Config> cfg, const std::vector<std::string>& only) {
  const auto errors = plugins_.load(cfg, false, only);
  if (!errors.empty()) {
    json list = json::array();
    for (const auto& e : errors) {
      spdlog::error("reload refused: {}", e.to_string());
      list.push_back({{"file", e.file}, {"reason", e.reason}});
    }
    return refused(422, "plugin reload refused; the running plugins keep serving", list);
  }
  {
    std::lock_guard lock(mu_);
    config_ = cfg;
    not_ready_reason_.clear();
  }
  note_suspects();
  spdlog::info("plugins reloaded: generation {}", plugins_.current()->generation);
  return {200, plugins_json()};
}

AdminAnswer PluginState::reload_config() {
  auto loaded = config::load_file(config_path_);
  if (!loaded.errors.empty()) {
    json list = json::array();
    for (const auto& e : loaded.errors) {
      spdlog::error("config reload refused: {}", e.to_string());
      list.push_back({{"file", e.file}, {"line", e.line}, {"column", e.column}, {"key", e.key}, {"message", e.message}});
    }
    return refused(422, "config reload refused; the running config stays", list);
  }
  auto result = reload(loaded.config, {});
  if (result.status != 200) return result;
  on_config_(*loaded.config);
  spdlog::info("config reloaded from {}", config_path_);
  return result;
}

}  // namespace pipelined::server

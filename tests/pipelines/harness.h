// End-to-end harness for the reference pipelines: provider-sim as a child process and the daemon's
// core in-process (WorkerPool + OutboundClient + Engine + PluginHost) on configs/default.yaml with
// its providers pointed at the sim. Used by tests/pipelines/e2e_test.cpp and bench/pipelines_bench.cpp.
#pragma once

#include "daemon/config/config.h"
#include "daemon/engine/engine.h"
#include "daemon/outbound/outbound.h"
#include "daemon/plugin_host/plugin_host.h"
#include "daemon/pool/worker_pool.h"
#include "tests/common/provider_sim_process.h"

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace harness {

using json = nlohmann::json;
namespace fs = std::filesystem;

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline fs::path source_dir() { return PIPELINED_SOURCE_DIR; }

// tests/fixtures/<relative> as a request attachment, as the server makes it from a multipart part.
inline pipelined::sdk::Attachment fixture(const std::string& relative) {
  const fs::path p = source_dir() / "tests/fixtures" / relative;
  return {p.filename().string(), "image/png", std::make_shared<const std::string>(read_file(p))};
}

// Minimal blocking HTTP for the sim's /_sim endpoints.
inline std::string http(const std::string& method, const std::string& url, long* status = nullptr,
                        const std::string& request_body = "", long timeout_ms = 10000) {
  CURL* curl = curl_easy_init();
  std::string body;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (method == "POST") curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request_body.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* p, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(p, size * n);
    return size * n;
  });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) throw std::runtime_error(method + " " + url + ": " + curl_easy_strerror(rc));
  if (status) *status = code;
  return body;
}

// provider-sim answering OCR from tests/fixtures, with its /_sim endpoints.
class ProviderSim : public pipelined::testing::ProviderSimProcess {
 public:
  explicit ProviderSim(std::vector<std::string> args)
      : ProviderSimProcess(with_fixtures(std::move(args))) {}

  json stats() const { return json::parse(http("GET", url() + "/_sim/stats")); }
  void reset() const { http("POST", url() + "/_sim/reset"); }

 private:
  static std::vector<std::string> with_fixtures(std::vector<std::string> args) {
    args.insert(args.begin(), {"--fixtures", (source_dir() / "tests/fixtures").string()});
    return args;
  }
};

// Every `from` in `text` replaced by `to`.
inline void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
}

// The text of configs/default.yaml with its providers on the sim, plugins from this build, state in
// `state_dir` (also what tests that start the daemon binary give it).
inline std::string default_yaml(const ProviderSim& sim, const fs::path& state_dir) {
  std::string yaml = read_file(source_dir() / "configs/default.yaml");
  replace_all(yaml, "http://127.0.0.1:9090", sim.url());
  replace_all(yaml, "plugin_directory: build/plugins", std::string("plugin_directory: ") + PIPELINED_PLUGIN_DIR);
  replace_all(yaml, "state_directory: var", "state_directory: " + state_dir.string());
  replace_all(yaml, "database: var/pipelined.db", "database: " + (state_dir / "pipelined.db").string());
  replace_all(yaml, "database: data/drugs.db", "database: " + (source_dir() / "data/drugs.db").string());
  replace_all(yaml, "socket: var/admin.sock", "socket: " + (state_dir / "admin.sock").string());
  for (const char* var : {"OPENAI_BASE_URL", "GOOGLE_TRANSLATE_BASE_URL", "GEMINI_BASE_URL"}) unsetenv(var);
  return yaml;
}

// default_yaml() parsed.
inline std::shared_ptr<pipelined::config::Config> default_config(const ProviderSim& sim, const fs::path& state_dir) {
  auto loaded = pipelined::config::load_string(default_yaml(sim, state_dir), "configs/default.yaml (test copy)");
  if (!loaded.errors.empty()) {
    std::string all;
    for (const auto& e : loaded.errors) all += e.to_string() + "\n";
    throw std::runtime_error("config: " + all);
  }
  auto config = std::make_shared<pipelined::config::Config>(*loaded.config);
  config->runner_path = std::string(PIPELINED_BINARY_DIR) + "/daemon/pipelined-runner";  // for isolation: process
  return config;
}

// A copy of `config` with every variant loaded in-process (isolation: in_process) and its state in
// `state_dir`; `*isolated`, when given, is set to how many variants `config` ran in a runner process.
inline std::shared_ptr<pipelined::config::Config> in_process_copy(const pipelined::config::Config& config, const fs::path& state_dir,
                                                                  int* isolated = nullptr) {
  using Isolation = pipelined::config::VariantConfig::Isolation;
  auto copy = std::make_shared<pipelined::config::Config>(config);
  copy->state_directory = state_dir.string();
  int n = 0;
  for (auto& p : copy->pipelines)
    for (auto& st : p.stages)
      for (auto& v : st.variants) {
        n += v.isolation == Isolation::Process;
        v.isolation = Isolation::InProcess;
      }
  if (isolated) *isolated = n;
  return copy;
}

// The daemon's core in-process.
class Stack {
 public:
  explicit Stack(std::shared_ptr<const pipelined::config::Config> config)
      : config_(std::move(config)),
        pool_(static_cast<std::size_t>(config_->worker_threads)),
        outbound_(config_->providers),
        engine_(pool_, &outbound_),
        host_(engine_.services()) {
    auto errors = host_.load(config_);
    if (!errors.empty()) {
      std::string all;
      for (const auto& e : errors) all += e.to_string() + "\n";
      throw std::runtime_error("plugins: " + all);
    }
  }

  // One request; `variants` maps stage -> variant (unlisted stages run stable).
  pipelined::engine::RunResult run(const std::string& pipeline, std::vector<pipelined::sdk::Attachment> files,
                                   std::map<std::string, std::string> variants = {},
                                   std::chrono::milliseconds timeout = std::chrono::minutes(10)) {
    pipelined::engine::RunRequest request;
    request.request_id = "test-" + std::to_string(++requests_);
    request.pipeline = pipeline;
    request.deadline = pipelined::engine::Clock::now() + timeout;
    request.input.attachments = std::move(files);
    request.variants = std::move(variants);
    return engine_.run_sync(host_.current(), std::move(request));
  }

  // Every stage of `pipeline` on `variant` where the stage has it, else stable.
  std::map<std::string, std::string> all(const std::string& pipeline, const std::string& variant) const {
    std::map<std::string, std::string> out;
    for (const auto& stage : config_->pipeline(pipeline)->stages)
      out[stage.name] = stage.variant(variant) ? variant : stage.stable;
    return out;
  }

  pipelined::outbound::OutboundClient& outbound() { return outbound_; }
  const pipelined::config::Config& config() const { return *config_; }

 private:
  std::shared_ptr<const pipelined::config::Config> config_;
  pipelined::pool::WorkerPool pool_;
  pipelined::outbound::OutboundClient outbound_;
  pipelined::engine::Engine engine_;
  pipelined::plugin_host::PluginHost host_;
  std::atomic<int> requests_{0};  // run() may be called from several threads
};

inline const pipelined::engine::StageRecord* stage_record(const pipelined::engine::RunResult& r, const std::string& stage) {
  for (const auto& s : r.stages)
    if (s.stage == stage) return &s;
  return nullptr;
}

// A counter of the sim's /_sim/stats for the endpoint whose path contains `endpoint`: the first of
// `keys` present (the sim's names, see docs/provider-sim.md). -1 when absent.
inline double sim_counter(const json& stats, const std::string& endpoint, std::initializer_list<const char*> keys) {
  const json* endpoints = &stats;
  if (stats.contains("endpoints")) endpoints = &stats["endpoints"];
  auto pick = [&](const json& e) -> double {
    for (const char* k : keys)
      if (e.contains(k) && e[k].is_number()) return e[k].get<double>();
    return -1;
  };
  if (endpoints->is_object()) {
    for (const auto& [name, e] : endpoints->items())
      if (name.find(endpoint) != std::string::npos && e.is_object()) return pick(e);
  } else if (endpoints->is_array()) {
    for (const json& e : *endpoints)
      if (e.is_object() && e.value("endpoint", e.value("path", "")).find(endpoint) != std::string::npos) return pick(e);
  }
  return -1;
}

}  // namespace harness

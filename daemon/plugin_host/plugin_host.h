// Loads stage plugins (Boost.DLL), checks their descriptor, and builds the immutable set of stage
// instances that requests run on. A reload builds a new PluginSet beside the old one and swaps the
// pointer: requests that hold the old set finish on the old libraries, which are unloaded when the
// last such request lets go.
#pragma once

#include "daemon/config/config.h"
#include "daemon/isolation/supervisor.h"

#include <pipelined/plugin_abi.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pipelined::plugin_host {

// One loaded plugin library: a private copy of the .so, opened with Boost.DLL. Unloaded (and the
// copy deleted) on destruction.
class PluginLibrary;

// One instance of a plugin, created with its variant's config: in this process (holding its library
// alive), or in a runner process (`isolation: process`, daemon/isolation/supervisor.h).
class StageInstance {
 public:
  StageInstance(std::shared_ptr<PluginLibrary> library, const pl_plugin_descriptor* descriptor, void* instance);
  StageInstance(std::unique_ptr<isolation::IsolatedVariant> isolated, std::string file);
  ~StageInstance();  // descriptor->destroy(instance), or the runner's shutdown
  StageInstance(const StageInstance&) = delete;
  StageInstance& operator=(const StageInstance&) = delete;

  // Calls descriptor->run. Never throws (the ABI forbids it; a stray C++ exception is a plugin bug).
  int run(pl_run_context* ctx, const pl_payload* input) const;

  const std::string& plugin_name() const { return plugin_name_; }
  const std::string& plugin_version() const { return plugin_version_; }
  const std::string& file() const;  // the configured plugin path, for messages
  // The runner of an isolated instance; null in-process.
  const isolation::IsolatedVariant* isolated() const { return isolated_.get(); }

 private:
  friend class PluginHost;  // reuses unchanged libraries across loads
  std::shared_ptr<PluginLibrary> library_;
  const pl_plugin_descriptor* descriptor_ = nullptr;
  void* instance_ = nullptr;
  std::unique_ptr<isolation::IsolatedVariant> isolated_;
  std::string file_;
  std::int64_t instance_bytes_ = 0;  // heap create() kept, where the allocator accounts
  std::string plugin_name_;
  std::string plugin_version_;
};

// Everything the engine needs to run requests: the config it was built from and one instance per
// (pipeline, stage, variant). Immutable once built.
struct PluginSet {
  std::shared_ptr<const config::Config> config;
  std::uint64_t generation = 0;
  // key: "<pipeline>/<stage>/<variant>"
  std::map<std::string, std::shared_ptr<const StageInstance>> instances;

  const StageInstance* find(const std::string& pipeline, const std::string& stage, const std::string& variant) const;
  // Releases the instances, then has malloc give freed memory back to the system (see the .cpp).
  ~PluginSet();
};

struct LoadError {
  std::string file;    // plugin path
  std::string reason;  // "missing entry symbol pipelined_plugin_entry", "ABI version 7, daemon speaks 1", ...
  std::string to_string() const { return file + ": " + reason; }
};

struct PluginInfo {
  std::string pipeline, stage, variant;
  std::string plugin_name, plugin_version, file;
  std::uint64_t generation;
  long use_count;  // holders of the set: the host's current pointer plus requests in flight
  std::int64_t instance_bytes = 0;  // heap the plugin's create() kept: the instance's own memory
  bool isolated = false;        // runs in a runner process
  isolation::RunnerStats runner;  // when isolated
};

class PluginHost {
 public:
  // `services` is handed to every plugin's create(); it must outlive the host. The service groups
  // it provides (entries within its struct_size and not null) decide which plugins load: one whose
  // descriptor requires another group is refused with a LoadError.
  explicit PluginHost(const pl_host_services* services);
  ~PluginHost();

  // Loads every plugin the config names. On any error nothing changes: the current set stays and
  // the errors are returned. On success the new set becomes current. Plugins whose file did not
  // change since the current set was built are reused unless `only` names them; `only` empty with
  // force=true reloads all.
  std::vector<LoadError> load(std::shared_ptr<const config::Config> config, bool force = false,
                              const std::vector<std::string>& only = {});

  // The set new requests run on; hold the pointer for the request's whole life.
  std::shared_ptr<const PluginSet> current() const;

  std::vector<PluginInfo> describe() const;
  // Libraries of replaced sets still held by in-flight requests.
  std::size_t retired_libraries() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pipelined::plugin_host

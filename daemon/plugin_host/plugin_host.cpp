#include "daemon/plugin_host/plugin_host.h"

#include "daemon/plugin_host/descriptor_check.h"
#include "daemon/memory/memory_account.h"

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/dll/shared_library.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

namespace fs = std::filesystem;

namespace pipelined::plugin_host {

// Identity of a plugin file on disk: a rebuilt .so differs in inode, size or mtime.
struct FileId {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  timespec mtime{};
  bool operator==(const FileId& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

class PluginLibrary {
 public:
  PluginLibrary(std::string file, FileId id, fs::path private_copy, boost::dll::shared_library library,
                const pl_plugin_descriptor* descriptor)
      : file_(std::move(file)), id_(id), private_copy_(std::move(private_copy)), library_(std::move(library)),
        descriptor_(descriptor) {}

  ~PluginLibrary() {
    library_.unload();
    std::error_code ec;
    fs::remove(private_copy_, ec);
    spdlog::debug("plugin host: unloaded {} ({})", file_, private_copy_.string());
  }

  const std::string& file() const { return file_; }
  const FileId& id() const { return id_; }
  const pl_plugin_descriptor* descriptor() const { return descriptor_; }

 private:
  std::string file_;
  FileId id_;
  fs::path private_copy_;
  boost::dll::shared_library library_;
  const pl_plugin_descriptor* descriptor_;
};

StageInstance::StageInstance(std::shared_ptr<PluginLibrary> library, const pl_plugin_descriptor* descriptor,
                             void* instance)
    : library_(std::move(library)), descriptor_(descriptor), instance_(instance),
      plugin_name_(descriptor->name ? descriptor->name : ""), plugin_version_(descriptor->version ? descriptor->version : "") {}

StageInstance::StageInstance(std::unique_ptr<isolation::IsolatedVariant> isolated, std::string file)
    : isolated_(std::move(isolated)), file_(std::move(file)), plugin_name_(isolated_->plugin_name()),
      plugin_version_(isolated_->plugin_version()) {}

// A retired generation frees its instances (Tesseract engines of about 90 MB each), and glibc's
// malloc keeps the freed space inside its arenas: in the 30-minute soak (bench/soak, reloads every
// few minutes) the daemon's RSS rose by a step at each reload while the bytes in use fell back
// (mallinfo2: 537 -> 186 MiB in use, RSS unchanged; +41 % from minute 10 to 30), and malloc_trim(0)
// took RSS from 1182 to 599 MiB in 80 ms. So trim once per released set, on a thread of its own:
// the last holder may be a request finishing on an I/O thread.
PluginSet::~PluginSet() {
  const bool released_any = !instances.empty();
  instances.clear();
  if (released_any) std::thread([] { ::malloc_trim(0); }).detach();
}

StageInstance::~StageInstance() {
  if (instance_ != nullptr) descriptor_->destroy(instance_);
}

int StageInstance::run(pl_run_context* ctx, const pl_payload* input) const {
  return isolated_ ? isolated_->run(ctx, input) : descriptor_->run(instance_, ctx, input);
}

const std::string& StageInstance::file() const {
  static const std::string in_process = "<in-process>";
  return library_ ? library_->file() : isolated_ ? file_ : in_process;
}

const StageInstance* PluginSet::find(const std::string& pipeline, const std::string& stage, const std::string& variant) const {
  auto it = instances.find(pipeline + "/" + stage + "/" + variant);
  return it == instances.end() ? nullptr : it->second.get();
}

namespace {

std::string errno_text() { return std::strerror(errno); }

// Refuses files the daemon should not run: missing, not regular, writable by others, not ELF .so.
// pipelined-runner beside the running executable.
std::string default_runner_path() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ((ec ? fs::path(".") : self.parent_path()) / "pipelined-runner").string();
}

std::optional<std::string> check_file(const fs::path& path, FileId& id) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "cannot open: " + errno_text();
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return std::string("file is writable by ") + ((st.st_mode & S_IWOTH) ? "others" : "group") + " (chmod go-w)";
  struct stat dir {};
  const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  if (::stat(parent.c_str(), &dir) == 0 && (dir.st_mode & (S_IWGRP | S_IWOTH)) && !(dir.st_mode & S_ISVTX))
    return "directory " + parent.string() + " is writable by " + ((dir.st_mode & S_IWOTH) ? "others" : "group") + " (chmod go-w)";
  unsigned char header[18] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(header), sizeof header);
  const bool elf = in.gcount() == sizeof header && std::memcmp(header, "\x7f" "ELF", 4) == 0;
  const int elf_type = header[16] | (header[17] << 8);  // e_type, little-endian on the hosts we build for
  if (!elf || elf_type != 3 /* ET_DYN */) return "not a shared object";
  id = {st.st_dev, st.st_ino, st.st_size, st.st_mtim};
  return std::nullopt;
}

}  // namespace

struct PluginHost::Impl {
  const pl_host_services* services;
  std::mutex load_mu;  // one load at a time
  mutable std::mutex current_mu;
  std::shared_ptr<const PluginSet> current;
  std::vector<std::weak_ptr<PluginLibrary>> libraries;  // every library ever loaded, for retired_libraries()
  std::atomic<std::uint64_t> copies{0};
  bool cache_cleared = false;

  // A private copy of the file: the dynamic loader caches by path, so a new build at the same path
  // would otherwise resolve to the old mapping, and a build that rewrites the file in place would
  // change the pages of a running plugin. Empty, with `error`, on failure.
  fs::path private_copy(const std::string& file, const fs::path& cache, std::uint64_t generation, std::string& error) {
    const fs::path copy = cache / (fs::path(file).stem().string() + "." + std::to_string(generation) + "." +
                                   std::to_string(copies.fetch_add(1)) + ".so");
    std::error_code ec;
    fs::copy_file(file, copy, fs::copy_options::overwrite_existing, ec);
    if (ec) error = "cannot copy to " + copy.string() + ": " + ec.message();
    return ec ? fs::path() : copy;
  }

  // Starts the runner of an `isolation: process` variant on a private copy of its plugin.
  std::unique_ptr<isolation::IsolatedVariant> start_isolated(const config::Config& config, const config::VariantConfig& v,
                                                             const std::string& file, const std::string& label, const fs::path& cache,
                                                             std::uint64_t generation, std::string& error) {
    if (!(provided_services(services) & PL_SERVICES_ASYNC_RUNS)) {
      error = "isolation: process needs the asynchronous-run host services, which this host does not provide";
      return nullptr;
    }
    isolation::RunnerOptions o;
    o.runner_path = config.runner_path.empty() ? default_runner_path() : config.runner_path;
    o.plugin_file = private_copy(file, cache, generation, error);
    if (o.plugin_file.empty()) return nullptr;
    o.config_json = v.config.dump();
    o.label = label;
    o.threads = static_cast<unsigned>(v.runner_threads);
    o.memory_limit_bytes = v.memory_limit_mb * 1024 * 1024;
    o.hang_grace = v.hang_grace;
    auto isolated = isolation::IsolatedVariant::start(o, services, error);
    if (!isolated) {
      std::error_code ec;
      fs::remove(o.plugin_file, ec);
      error = "isolation: process: " + error;
    }
    return isolated;
  }

  // Loads the file in this process, from a private copy (see private_copy).
  std::shared_ptr<PluginLibrary> open(const std::string& file, const FileId& id, const fs::path& cache, std::uint64_t generation,
                                      std::string& error) {
    const fs::path copy = private_copy(file, cache, generation, error);
    if (copy.empty()) return nullptr;
    std::error_code ec;
    boost::dll::shared_library library;
    library.load(copy, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
      fs::remove(copy, ec);
      error = "cannot load: " + ec.message();
      return nullptr;
    }
    if (!library.has(PL_ENTRY_SYMBOL)) {
      library.unload();
      fs::remove(copy, ec);
      error = "missing entry symbol " PL_ENTRY_SYMBOL;
      return nullptr;
    }
    const pl_plugin_descriptor* d = library.get<const pl_plugin_descriptor*()>(PL_ENTRY_SYMBOL)();
    if (auto bad = check_descriptor(d, services)) {
      library.unload();
      fs::remove(copy, ec);
      error = *bad;
      return nullptr;
    }
    auto lib = std::make_shared<PluginLibrary>(file, id, copy, std::move(library), d);
    libraries.push_back(lib);
    return lib;
  }
};

PluginHost::PluginHost(const pl_host_services* services) : impl_(std::make_unique<Impl>()) { impl_->services = services; }

PluginHost::~PluginHost() = default;

std::shared_ptr<const PluginSet> PluginHost::current() const {
  std::lock_guard lock(impl_->current_mu);
  return impl_->current;
}

std::vector<LoadError> PluginHost::load(std::shared_ptr<const config::Config> config, bool force,
                                        const std::vector<std::string>& only) {
  std::lock_guard load_lock(impl_->load_mu);
  std::vector<LoadError> errors;
  const auto previous = current();
  const std::uint64_t generation = previous ? previous->generation + 1 : 1;
  const fs::path cache = fs::path(config->state_directory) / "plugin-cache";
  std::error_code ec;
  if (!impl_->cache_cleared) {
    fs::remove_all(cache, ec);  // copies left by a daemon that did not stop cleanly
    impl_->cache_cleared = true;
  }
  fs::create_directories(cache, ec);
  if (ec || ::chmod(cache.c_str(), 0700) != 0) {
    errors.push_back({cache.string(), "cannot create the plugin cache directory: " + (ec ? ec.message() : errno_text())});
    return errors;
  }

  std::set<std::string> used_stages;
  for (const auto& p : config->pipelines)
    for (const auto& s : p.stages) used_stages.insert(s.name);
  const std::set<std::string> named(only.begin(), only.end());

  // Libraries of the current set, by file, for reuse when the file did not change.
  std::map<std::string, std::shared_ptr<PluginLibrary>> reusable;
  if (previous && !force) {
    for (const auto& [key, instance] : previous->instances)
      if (instance->library_ && !named.count(fs::path(instance->library_->file()).stem().string()))
        reusable[instance->library_->file()] = instance->library_;
  }

  auto set = std::make_shared<PluginSet>();
  set->config = config;
  set->generation = generation;
  std::map<std::string, std::shared_ptr<PluginLibrary>> opened;  // this load's libraries, by file
  for (const auto& p : config->pipelines) {
    for (const auto& s : p.stages) {
      for (const auto& v : s.variants) {
        const std::string file = (fs::path(config->plugin_directory) / (v.plugin + ".so")).string();
        // The plugin must implement the stage it is configured for, and that stage must be in use.
        const auto wrong_stage = [&](const std::string& stage, const std::string& variant) -> bool {
          if (!used_stages.count(stage)) {
            errors.push_back({file, "stage '" + stage + "' is not used by any pipeline"});
            return true;
          }
          if (s.name != stage) {
            errors.push_back({file, "implements stage '" + stage + "' but is configured for stage '" + s.name + "' of pipeline '" + p.name + "'"});
            return true;
          }
          if (v.name != variant)
            spdlog::warn("plugin host: {} is variant '{}' and configured as variant '{}' of {}/{}", file, variant, v.name, p.name, s.name);
          return false;
        };
        const std::string key = p.name + "/" + s.name + "/" + v.name;
        if (v.isolation == config::VariantConfig::Isolation::Process) {
          FileId id;
          if (auto bad = check_file(file, id)) {
            errors.push_back({file, *bad});
            continue;
          }
          std::string error;
          auto isolated = impl_->start_isolated(*config, v, file, key, cache, generation, error);
          if (!isolated) {
            errors.push_back({file, error});
            continue;
          }
          if (wrong_stage(isolated->stage(), isolated->variant())) continue;
          set->instances[key] = std::make_shared<const StageInstance>(std::move(isolated), file);
          continue;
        }
        std::shared_ptr<PluginLibrary> lib;
        if (auto it = opened.find(file); it != opened.end()) {
          lib = it->second;
        } else {
          FileId id;
          if (auto bad = check_file(file, id)) {
            errors.push_back({file, *bad});
            continue;
          }
          if (auto it2 = reusable.find(file); it2 != reusable.end() && it2->second->id() == id) {
            lib = it2->second;
          } else {
            std::string error;
            lib = impl_->open(file, id, cache, generation, error);
            if (!lib) {
              errors.push_back({file, error});
              continue;
            }
          }
          opened[file] = lib;
        }
        const pl_plugin_descriptor* d = lib->descriptor();
        if (wrong_stage(d->stage, d->variant)) continue;
        const std::string config_json = v.config.dump();
        pl_error err{};
        memory::MemoryAccount instance_account;  // what create() keeps is the instance's, not a request's
        void* instance = nullptr;
        {
          memory::ScopedAccount scope(&instance_account);
          instance = d->create(config_json.data(), config_json.size(), impl_->services, &err);
        }
        if (instance == nullptr) {
          errors.push_back({file, "create() failed: " + std::string(err.message[0] ? err.message : "no reason given")});
          continue;
        }
        auto created = std::make_shared<StageInstance>(lib, d, instance);
        created->instance_bytes_ = instance_account.current.load();
        set->instances[key] = std::move(created);
      }
    }
  }
  if (!errors.empty()) return errors;  // the set and its new libraries are released here

  {
    std::lock_guard lock(impl_->current_mu);
    impl_->current = set;
  }
  spdlog::info("plugin host: generation {} with {} stage instances", generation, set->instances.size());
  return errors;
}

std::vector<PluginInfo> PluginHost::describe() const {
  std::vector<PluginInfo> out;
  const auto set = current();
  if (!set) return out;
  for (const auto& [key, instance] : set->instances) {
    PluginInfo info;
    const auto first = key.find('/');
    const auto second = key.find('/', first + 1);
    info.pipeline = key.substr(0, first);
    info.stage = key.substr(first + 1, second - first - 1);
    info.variant = key.substr(second + 1);
    info.plugin_name = instance->plugin_name();
    info.plugin_version = instance->plugin_version();
    info.file = instance->file();
    info.generation = set->generation;
    info.instance_bytes = instance->instance_bytes_;
    if (const auto* isolated = instance->isolated()) {
      info.isolated = true;
      info.runner = isolated->stats();
      info.instance_bytes = info.runner.instance_bytes;
    }
    info.use_count = set.use_count() - 1;  // the host's current pointer and requests in flight; not this copy
    out.push_back(std::move(info));
  }
  return out;
}

std::size_t PluginHost::retired_libraries() const {
  std::lock_guard load_lock(impl_->load_mu);
  const auto set = current();
  std::set<const PluginLibrary*> live;
  if (set)
    for (const auto& [key, instance] : set->instances) live.insert(instance->library_.get());
  std::size_t retired = 0;
  auto& libs = impl_->libraries;
  for (auto it = libs.begin(); it != libs.end();) {
    auto lib = it->lock();
    if (!lib) {
      it = libs.erase(it);
      continue;
    }
    if (!live.count(lib.get())) ++retired;
    ++it;
  }
  return retired;
}

}  // namespace pipelined::plugin_host

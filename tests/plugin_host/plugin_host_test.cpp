#include "daemon/plugin_host/plugin_host.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

namespace fs = std::filesystem;

// What a stage run reported, captured by the minimal host services below.
struct pl_run_context {
  std::string output;
  std::string error_class;
  std::string error;
};

namespace pipelined::plugin_host {
namespace {

int set_output(pl_run_context* ctx, const pl_payload* p) {
  ctx->output.assign(p->json, p->json_size);
  return PL_OK;
}
void set_error(pl_run_context* ctx, const char* cls, const char* message) {
  ctx->error_class = cls;
  ctx->error = message;
}
const pl_host_services kServices = {
    sizeof(pl_host_services),
    [](pl_run_context*, int, const char*) {},
    [](pl_run_context*) -> int64_t { return 60000; },
    [](pl_run_context*) { return 0; },
    set_output,
    set_error,
    [](pl_run_context*, const pl_payload*) { return PL_ERROR; },
    [](pl_run_context*, pl_payload*) { return PL_END; },
    [](pl_run_context*) -> pl_task_group* { return nullptr; },
    [](pl_task_group*, void (*)(void*), void*) { return PL_ERROR; },
    [](pl_task_group*) {},
    [](pl_task_group*) {},
    [](pl_run_context*, const pl_http_request*, pl_http_callback, void*) { return PL_ERROR; },
};

pl_run_context run(const StageInstance& instance, const std::string& json = "{}") {
  pl_run_context ctx;
  pl_payload in{json.data(), json.size(), nullptr, 0};
  const int rc = instance.run(&ctx, &in);
  if (rc != PL_OK && ctx.error_class.empty()) ctx.error_class = "rc " + std::to_string(rc);
  return ctx;
}

class PluginHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("plugin_host_test." + std::to_string(::getpid()) + "." +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "plugins");
    fs::permissions(root_ / "plugins", fs::perms(0755));
  }
  void TearDown() override { fs::remove_all(root_); }

  // Installs a built test plugin into the test's plugin directory as <as>.so (atomically).
  void install(const std::string& plugin, const std::string& as = "") {
    const fs::path target = root_ / "plugins" / ((as.empty() ? plugin : as) + ".so");
    const fs::path temp = target.string() + ".tmp";
    fs::copy_file(fs::path(PIPELINED_TEST_PLUGIN_DIR) / (plugin + ".so"), temp, fs::copy_options::overwrite_existing);
    fs::permissions(temp, fs::perms(0755));
    fs::rename(temp, target);
  }

  // A config with one pipeline "p" whose stage `stage` has the plugin `plugin` as variant "serial".
  std::shared_ptr<const config::Config> config_for(const std::string& stage, const std::string& plugin,
                                                   const std::string& variant_config = "{}") {
    const std::string yaml = "plugin_directory: " + (root_ / "plugins").string() + "\nstate_directory: " +
                             (root_ / "state").string() + "\npipelines:\n  p:\n    stages:\n      " + stage +
                             ":\n        variants:\n          serial: { plugin: " + plugin + ", config: " + variant_config +
                             " }\n        stable: serial\n";
    auto r = config::load_string(yaml);
    EXPECT_TRUE(r.errors.empty()) << (r.errors.empty() ? "" : r.errors[0].to_string());
    return r.config;
  }

  // Loads and expects exactly one refusal naming the plugin file and containing `reason`.
  void expect_refused(PluginHost& host, const std::shared_ptr<const config::Config>& config, const std::string& file,
                      const std::string& reason) {
    auto errors = host.load(config);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].file, (root_ / "plugins" / (file + ".so")).string());
    EXPECT_NE(errors[0].reason.find(reason), std::string::npos) << errors[0].to_string();
  }

  fs::path root_;
};

TEST_F(PluginHostTest, LoadsAndRunsAPlugin) {
  install("test_echo");
  PluginHost host(&kServices);
  auto errors = host.load(config_for("echo", "test_echo", "{ output: { added: 7 } }"));
  ASSERT_TRUE(errors.empty()) << errors[0].to_string();
  auto set = host.current();
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->generation, 1u);
  const StageInstance* echo = set->find("p", "echo", "serial");
  ASSERT_NE(echo, nullptr);
  EXPECT_EQ(echo->plugin_name(), "test_echo");
  EXPECT_EQ(echo->plugin_version(), "1.0.0");
  auto out = nlohmann::json::parse(run(*echo, R"({"in": 1})").output);
  EXPECT_EQ(out["in"], 1);
  EXPECT_EQ(out["added"], 7);
  auto info = host.describe();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].stage, "echo");
  EXPECT_EQ(info[0].plugin_name, "test_echo");
}

TEST_F(PluginHostTest, RefusesMissingFile) {
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "absent"), "absent", "cannot open");
}

TEST_F(PluginHostTest, RefusesADirectory) {
  fs::create_directories(root_ / "plugins" / "dir.so");
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "dir"), "dir", "not a regular file");
}

TEST_F(PluginHostTest, RefusesGroupOrOtherWritableFile) {
  install("test_echo");
  fs::permissions(root_ / "plugins" / "test_echo.so", fs::perms(0775));
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_echo"), "test_echo", "writable by group");
  fs::permissions(root_ / "plugins" / "test_echo.so", fs::perms(0757));
  expect_refused(host, config_for("echo", "test_echo"), "test_echo", "writable by others");
}

TEST_F(PluginHostTest, RefusesWritableDirectory) {
  install("test_echo");
  fs::permissions(root_ / "plugins", fs::perms(0777));
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_echo"), "test_echo", "is writable by others");
}

TEST_F(PluginHostTest, RefusesNonSharedObject) {
  std::ofstream(root_ / "plugins" / "text.so") << "this is not an ELF file, it only has the name of one\n";
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "text"), "text", "not a shared object");
}

TEST_F(PluginHostTest, RefusesMissingEntrySymbol) {
  install("test_no_entry");
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_no_entry"), "test_no_entry", "missing entry symbol pipelined_plugin_entry");
}

TEST_F(PluginHostTest, RefusesAbiMismatch) {
  install("test_bad_abi");
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_bad_abi"), "test_bad_abi", "ABI version 999, this daemon speaks 1");
}

TEST_F(PluginHostTest, RefusesTruncatedDescriptor) {
  install("test_small_descriptor");
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_small_descriptor"), "test_small_descriptor", "struct_size 8");
}

// kServices has no asynchronous runs (complete, post and poll_item are null): an AsyncStage plugin
// is refused by the load itself, before its create() could refuse the host.
TEST_F(PluginHostTest, RefusesPluginRequiringServicesTheHostLacks) {
  install("test_async_echo");
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_async_echo"), "test_async_echo",
                 "requires host services this daemon does not provide: asynchronous runs (complete, post, poll_item)");
  EXPECT_EQ(host.current(), nullptr);
}

TEST_F(PluginHostTest, RefusesPluginRequiringUnknownServices) {
  install("test_future_services");
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_future_services"), "test_future_services",
                 "requires host services this daemon does not provide: unknown service groups 0x80000000");
}

TEST_F(PluginHostTest, LoadsPluginRequiringServicesTheHostProvides) {
  install("test_async_echo");
  pl_host_services services = kServices;
  services.complete = [](pl_run_context*, int) {};
  services.post = [](pl_run_context*, void (*fn)(void*), void* arg) {
    fn(arg);
    return PL_OK;
  };
  services.poll_item = [](pl_run_context*, pl_payload*, void (*)(void*), void*) { return int{PL_ITEM_END}; };
  PluginHost host(&services);
  auto errors = host.load(config_for("echo", "test_async_echo"));
  ASSERT_TRUE(errors.empty()) << errors[0].to_string();
  EXPECT_NE(host.current()->find("p", "echo", "serial"), nullptr);
}

TEST_F(PluginHostTest, RefusesStageNotUsedByAnyPipeline) {
  install("test_emitter");  // implements stage "emit"
  PluginHost host(&kServices);
  expect_refused(host, config_for("echo", "test_emitter"), "test_emitter", "stage 'emit' is not used by any pipeline");
}

TEST_F(PluginHostTest, RefusesPluginForAnotherStage) {
  install("test_echo");
  install("test_emitter");
  const std::string yaml = "plugin_directory: " + (root_ / "plugins").string() + "\nstate_directory: " +
                           (root_ / "state").string() +
                           "\npipelines:\n  p:\n    stages:\n      emit:\n        variants: { serial: { plugin: test_echo } }\n"
                           "        stable: serial\n      echo:\n        variants: { serial: { plugin: test_emitter } }\n"
                           "        stable: serial\n";
  auto config = config::load_string(yaml).config;
  ASSERT_NE(config, nullptr);
  PluginHost host(&kServices);
  auto errors = host.load(config);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].reason.find("implements stage 'echo' but is configured for stage 'emit'"), std::string::npos);
}

TEST_F(PluginHostTest, ConstructorExceptionIsACreateError) {
  install("test_throw_create");
  PluginHost host(&kServices);
  expect_refused(host, config_for("throw", "test_throw_create"), "test_throw_create",
                 "create() failed: test_throw_create: constructor refuses");
}

TEST_F(PluginHostTest, RunExceptionIsAnErrorResult) {
  install("test_throw");
  PluginHost host(&kServices);
  ASSERT_TRUE(host.load(config_for("throw", "test_throw")).empty());
  auto result = run(*host.current()->find("p", "throw", "serial"));
  EXPECT_EQ(result.error_class, "internal");
  EXPECT_EQ(result.error, "test_throw: run throws");
}

TEST_F(PluginHostTest, RefusedLoadKeepsThePreviousSetServing) {
  install("test_echo");
  PluginHost host(&kServices);
  ASSERT_TRUE(host.load(config_for("echo", "test_echo")).empty());
  const auto before = host.current();
  install("test_bad_abi", "test_echo");  // a broken build replaces the good one
  auto errors = host.load(before->config);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(host.current(), before);
  EXPECT_NE(run(*host.current()->find("p", "echo", "serial")).output.find("test_echo"), std::string::npos);
}

TEST_F(PluginHostTest, UnchangedLibrariesAreReusedAndChangedOnesReloaded) {
  install("test_versioned_v1", "swap");
  PluginHost host(&kServices);
  auto config = config_for("swap", "swap");
  ASSERT_TRUE(host.load(config).empty());
  auto first = host.current();
  ASSERT_TRUE(host.load(config).empty());
  EXPECT_EQ(host.retired_libraries(), 0u);  // same file: the library was reused
  install("test_versioned_v2", "swap");
  ASSERT_TRUE(host.load(config).empty());
  EXPECT_EQ(host.retired_libraries(), 1u);  // `first` still holds v1
  EXPECT_EQ(nlohmann::json::parse(run(*first->find("p", "swap", "serial")).output)["version"], "1");
  EXPECT_EQ(nlohmann::json::parse(run(*host.current()->find("p", "swap", "serial")).output)["version"], "2");
  first.reset();
  EXPECT_EQ(host.retired_libraries(), 0u);
}

// Four threads run on whatever set is current while the main thread swaps v1 and v2 builds of
// the plugin 24 times: no run may fail, both versions must be seen, and every retired library
// must be unloaded and its private copy deleted once its last run ended.
TEST_F(PluginHostTest, HotSwapUnderConcurrentRunsLosesNothing) {
  install("test_versioned_v1", "swap");
  PluginHost host(&kServices);
  auto config = config_for("swap", "swap", "{ sleep_ms: 1 }");
  ASSERT_TRUE(host.load(config).empty());

  std::atomic<bool> stop{false};
  std::atomic<long> runs{0}, failures{0}, v1{0}, v2{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      while (!stop) {
        auto set = host.current();
        auto ctx = run(*set->find("p", "swap", "serial"));
        ++runs;
        if (!ctx.error_class.empty()) {
          ++failures;
          continue;
        }
        const std::string version = nlohmann::json::parse(ctx.output)["version"];
        ++(version == "1" ? v1 : v2);
      }
    });
  }
  for (int i = 0; i < 24; ++i) {
    install(i % 2 == 0 ? "test_versioned_v2" : "test_versioned_v1", "swap");
    auto errors = host.load(config);
    ASSERT_TRUE(errors.empty()) << errors[0].to_string();
    const long seen = runs.load();
    while (runs.load() < seen + 8) std::this_thread::yield();  // let runs happen on this build
  }
  stop = true;
  for (auto& c : clients) c.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(v1.load(), 0);
  EXPECT_GT(v2.load(), 0);
  EXPECT_EQ(host.current()->generation, 25u);
  EXPECT_EQ(host.retired_libraries(), 0u);
  std::size_t copies = 0;
  for (const auto& entry : fs::directory_iterator(root_ / "state" / "plugin-cache")) {
    (void)entry;
    ++copies;
  }
  EXPECT_EQ(copies, 1u);  // only the current build's private copy is left
}

}  // namespace
}  // namespace pipelined::plugin_host

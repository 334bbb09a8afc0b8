// Installs the SDK from this build tree, builds tests/sdk/out_of_tree against it as a separate
// CMake project, then loads the plugin with the daemon's plugin host and runs it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "daemon/engine/engine.h"
#include "daemon/plugin_host/plugin_host.h"

namespace fs = std::filesystem;

namespace {

int sh(const std::string& command) {
  const int status = std::system((command + " > " + (fs::temp_directory_path() / "sdk_install_test.log").string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Sdk, OutOfTreePluginBuildsAgainstTheInstalledSdkAndRuns) {
  const fs::path root = fs::temp_directory_path() / ("sdk_install_test." + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  ASSERT_EQ(sh("cmake --install " PIPELINED_BINARY_DIR " --component sdk --prefix " + (root / "prefix").string()), 0);
  EXPECT_TRUE(fs::exists(root / "prefix/include/pipelined/sdk.hpp"));
  EXPECT_TRUE(fs::exists(root / "prefix/lib/cmake/pipelinedSDK/pipelinedSDKConfig.cmake"));
  ASSERT_EQ(sh("cmake -S " PIPELINED_SOURCE_DIR "/tests/sdk/out_of_tree -B " + (root / "build").string() +
               " -DCMAKE_PREFIX_PATH=" + (root / "prefix").string()),
            0) << "configure failed: see " << (fs::temp_directory_path() / "sdk_install_test.log");
  ASSERT_EQ(sh("cmake --build " + (root / "build").string()), 0);
  ASSERT_TRUE(fs::exists(root / "build/greeter.so"));
  fs::create_directories(root / "plugins");
  fs::copy_file(root / "build/greeter.so", root / "plugins/greeter.so");
  fs::permissions(root / "plugins", fs::perms(0755));
  fs::permissions(root / "plugins/greeter.so", fs::perms(0755));

  auto loaded = pipelined::config::load_string("plugin_directory: " + (root / "plugins").string() + "\nstate_directory: " +
                                               (root / "state").string() +
                                               "\npipelines:\n  p:\n    stages:\n      greet:\n        variants:\n"
                                               "          serial: { plugin: greeter, config: { greeting: hi } }\n"
                                               "        stable: serial\n");
  ASSERT_TRUE(loaded.errors.empty());
  pipelined::pool::WorkerPool pool(2);
  pipelined::engine::Engine engine(pool, nullptr);
  pipelined::plugin_host::PluginHost host(engine.services());
  auto errors = host.load(loaded.config);
  ASSERT_TRUE(errors.empty()) << errors[0].to_string();
  pipelined::engine::RunRequest request;
  request.pipeline = "p";
  request.deadline = pipelined::engine::Clock::now() + std::chrono::seconds(5);
  request.input.json = {{"name", "operator"}};
  auto result = engine.run_sync(host.current(), std::move(request));
  ASSERT_TRUE(result.ok) << result.error_message;
  EXPECT_EQ(result.outputs.at("greet").json["greeting"], "hi, operator");
  fs::remove_all(root);
}

}  // namespace

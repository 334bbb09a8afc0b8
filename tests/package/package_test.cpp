// The Debian packages as an operator gets them: CPack run on this build into a temporary directory,
// the .deb files read with dpkg-deb (files, dependencies, conffiles), and the runtime package
// unpacked into a temporary root whose daemon, pipectl and provider-sim then run. The packaged
// config is used with its absolute paths moved into that root, so a path the package forgot fails.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/admin_cli/run_pipectl.h"
#include "tests/server/daemon_process.h"

namespace {

using namespace pipelined::testing;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
}

// The packages, made by CPack from this build into a temporary directory.
class Packages {
 public:
  Packages() : made_(run("cpack -G DEB -B " + dir_ / "out" + " --config " CPACK_CONFIG)) {}
  const Outcome& made() const { return made_; }
  const TempDir& dir() const { return dir_; }
  std::string deb(const std::string& name, const std::string& arch) const {
    return dir_ / ("out/" + name + "_" PIPELINED_VERSION "_" + arch + ".deb");
  }

 private:
  TempDir dir_;
  Outcome made_;
};

Outcome dpkg_deb(const std::string& args) { return run("dpkg-deb " + args); }

void check_runtime_package(const Packages& p) {
  const Outcome files = dpkg_deb("-c " + p.deb("pipelined", "amd64"));
  ASSERT_EQ(files.code, 0) << files.out;
  for (const char* f :
       {"./usr/bin/pipelined", "./usr/bin/pipelined-runner", "./usr/bin/pipectl", "./usr/bin/provider-sim", "./usr/lib/pipelined/plugins/menu_describe_parallel.so",
        "./usr/lib/pipelined/plugins/medicine_drugs.so", "./usr/lib/pipelined/plugins/menu_ocr_tesseract_serial.so",
        "./usr/share/pipelined/drugs.db", "./usr/share/pipelined/migrations/001_initial.sql",
        "./usr/share/pipelined/provider-sim/glossary.tsv", "./etc/pipelined/pipelined.yaml", "./etc/pipelined/production.example.yaml",
        "./usr/lib/systemd/system/pipelined.service", "./usr/lib/sysusers.d/pipelined.conf", "./usr/share/doc/pipelined/operations.md"})
    EXPECT_NE(files.out.find(std::string(f) + "\n"), std::string::npos) << f << " missing:\n" << files.out;
  EXPECT_EQ(files.out.find("./usr/include/"), std::string::npos) << "the SDK headers belong to pipelined-dev";
  EXPECT_EQ(files.out.find("test_"), std::string::npos) << "no test plugin ships:\n" << files.out;

  const Outcome info = dpkg_deb("-I " + p.deb("pipelined", "amd64"));
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("Package: pipelined\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("Architecture: amd64"), std::string::npos) << info.out;
  const auto depends_at = info.out.find(" Depends: ");
  ASSERT_NE(depends_at, std::string::npos) << info.out;
  const std::string depends = info.out.substr(depends_at, info.out.find('\n', depends_at) - depends_at);
  for (const char* d : {"libc6", "libstdc++6", "libcurl4", "libsqlite3-0", "libyaml-cpp", "libtesseract", "tesseract-ocr-eng"})
    EXPECT_NE(depends.find(d), std::string::npos) << d << " not in" << depends;
  const Outcome conffiles = dpkg_deb("-I " + p.deb("pipelined", "amd64") + " conffiles");
  EXPECT_NE(conffiles.out.find("/etc/pipelined/pipelined.yaml"), std::string::npos) << conffiles.out;
  // The unit runs the packaged binary.
  const Outcome unit = dpkg_deb("--fsys-tarfile " + p.deb("pipelined", "amd64") + " | tar -xO ./usr/lib/systemd/system/pipelined.service");
  EXPECT_NE(unit.out.find("ExecStart=/usr/bin/pipelined --config /etc/pipelined/pipelined.yaml"), std::string::npos) << unit.out;
}

void check_dev_package(const Packages& p) {
  const Outcome files = dpkg_deb("-c " + p.deb("pipelined-dev", "all"));
  ASSERT_EQ(files.code, 0) << files.out;
  for (const char* f : {"./usr/include/pipelined/plugin_abi.h", "./usr/include/pipelined/sdk.hpp", "./usr/include/pipelined/payload.hpp",
                        "./usr/lib/cmake/pipelinedSDK/pipelinedSDKConfig.cmake", "./usr/lib/cmake/pipelinedSDK/PipelinedPlugin.cmake"})
    EXPECT_NE(files.out.find(std::string(f) + "\n"), std::string::npos) << f << " missing:\n" << files.out;
  EXPECT_EQ(files.out.find("./usr/bin/"), std::string::npos) << files.out;
  const Outcome info = dpkg_deb("-I " + p.deb("pipelined-dev", "all"));
  EXPECT_NE(info.out.find("Package: pipelined-dev\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("Depends: nlohmann-json3-dev"), std::string::npos) << info.out;
}

void run_unpacked(const Packages& p) {
  const std::string root = p.dir() / "root";
  const Outcome x = dpkg_deb("-x " + p.deb("pipelined", "amd64") + " " + root);
  ASSERT_EQ(x.code, 0) << x.out;

  // provider-sim finds its installed glossary (it exits when it has none).
  const Outcome sim = run("timeout -s INT 2 " + root + "/usr/bin/provider-sim --port 0 --time-scale 0");
  EXPECT_NE(sim.out.find("listening on 127.0.0.1:"), std::string::npos) << sim.out;

  std::string config = read_file(root + "/etc/pipelined/pipelined.yaml");
  replace_all(config, "/usr/", root + "/usr/");
  replace_all(config, "/var/lib/pipelined", p.dir() / "state");
  replace_all(config, "listen: 127.0.0.1:8080", "listen: 127.0.0.1:0");
  write_file(p.dir() / "pipelined.yaml", config);
  DaemonProcess daemon(p.dir() / "pipelined.yaml", root + "/usr/bin/pipelined");
  HttpClient client(daemon.port());
  EXPECT_EQ(client.request(http::verb::get, "/healthz").result_int(), 200);
  const Outcome status = run(root + "/usr/bin/pipectl --socket " + p.dir() / "state/admin.sock" + " status --json");
  ASSERT_EQ(status.code, 0) << status.out;
  const auto j = nlohmann::json::parse(status.out, nullptr, false);
  EXPECT_EQ(j.value("version", ""), PIPELINED_VERSION) << status.out;
  EXPECT_TRUE(j["rollout"]["pipelines"].contains("menu")) << status.out;
  int runners_up = 0;  // the candidates of the packaged config run in the packaged pipelined-runner
  for (const auto& plugin : j["plugins"]["plugins"]) runners_up += plugin.contains("runner") && plugin["runner"].value("up", false);
  EXPECT_GT(runners_up, 0) << status.out;
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

// One test, so CPack runs once: ctest starts each test of a file as its own process.
TEST(Package, DebFilesDependenciesAndUnpackedDaemon) {
  const Packages p;
  ASSERT_EQ(p.made().code, 0) << p.made().out;
  {
    SCOPED_TRACE("pipelined package");
    check_runtime_package(p);
  }
  {
    SCOPED_TRACE("pipelined-dev package");
    check_dev_package(p);
  }
  SCOPED_TRACE("unpacked daemon");
  run_unpacked(p);
}

}  // namespace

// Fuzzes admin API requests (daemon/server/admin_routes.cpp, admin_rollout.cpp) through
// AdminRoutes::serve as the admin listener calls it: route and method lookup, the JSON body
// check, then the handler on the worker pool turning the body or query into a typed
// RolloutController call (start/update, rollback, promote, pause, resume, report) against a real
// controller over a metrics database file, built from configs/default.yaml as the daemon builds
// it. Bad requests must be 4xx answers: the pool catches a handler's std::exception and answers 500
// "admin request failed", which here counts as a bug (a request the handler did not validate). A
// refused request must leave the rollout state as it was.
// Input: "METHOD /target" on the first line, then the body.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "daemon/config/config.h"
#include "daemon/server/admin_routes.h"
#include "daemon/server/rollout_settings.h"
#include "rollout/store.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;
namespace http = boost::beast::http;

namespace {

namespace fs = std::filesystem;

// Every input starts from the same database: a copy of one made (and migrated) once per process.
// Running the schema migrations for each input was three quarters of the target's time (about
// 180 inputs/s); copying the migrated file is not. The files live in a directory of this process
// under $TMPDIR and are removed at exit.
struct Databases {
  fs::path dir;
  fs::path migrated;
  fs::path work;

  Databases() {
    spdlog::set_level(spdlog::level::warn);  // not a line per input for each database opened
    std::string tmpl = (fs::temp_directory_path() / "pipelined-admin-fuzz.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) fuzz::fail("mkdtemp failed");
    dir = tmpl;
    migrated = dir / "migrated.db";
    work = dir / "work.db";
    rollout::MetricsStore{migrated.string()};  // applies the migrations; closed (and checkpointed) again
  }
  ~Databases() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }

  // A fresh copy of the migrated database, without the previous input's WAL.
  const fs::path& fresh() const {
    for (const char* suffix : {"-wal", "-shm"}) fs::remove(work.string() + suffix);
    fs::copy_file(migrated, work, fs::copy_options::overwrite_existing);
    return work;
  }
};

rollout::RolloutSettings settings() {
  auto loaded = config::load_file(PIPELINED_SOURCE_DIR "/configs/default.yaml");
  if (!loaded.errors.empty()) fuzz::fail("configs/default.yaml: " + loaded.errors.front().to_string());
  return server::rollout_settings(*loaded.config);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const rollout::RolloutSettings kSettings = settings();
  static const Databases databases;
  static pool::WorkerPool pool(1);
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::size_t eol = text.find('\n');
  const std::string line = text.substr(0, eol);
  const std::string body = eol == std::string::npos ? "" : text.substr(eol + 1);
  const std::size_t space = line.find(' ');
  const std::string method = space == std::string::npos ? "POST" : line.substr(0, space);
  server::Request req;
  req.method_string(method);
  const std::string target = space == std::string::npos ? line : line.substr(space + 1);
  if (target.find_first_of("\r\n") != std::string::npos) return 0;  // Beast's parser never yields such a target
  req.target(target);
  req.version(11);
  req.body() = body;
  req.prepare_payload();

  // Each input is one request against the state of a new controller, so that a crash reproduces
  // from its input alone. A new controller costs more than most requests (its two connections read
  // the schema), so one is reused while the requests it served changed nothing: a GET, or any
  // request it refused (4xx). That a refused request changes nothing is checked (the status after
  // it against the new controller's), and is a property of the admin API worth fuzzing of its own.
  static std::optional<rollout::RolloutController> controller;
  static nlohmann::json fresh_status;  // what every reused controller still answers
  if (!controller) {
    rollout::RolloutSettings settings = kSettings;
    settings.database = databases.fresh().string();
    controller.emplace(settings);
    fresh_status = controller->status().to_json();
  }
  server::AdminRoutes routes(server::rollout_routes(*controller, [](const std::string&, nlohmann::json&) {}), pool);
  std::promise<server::Response> answered;
  auto done = answered.get_future();
  server::Reply reply([&answered](server::Response r) { answered.set_value(std::move(r)); },
                      [](server::ResponseHeader, server::StreamOptions) -> std::shared_ptr<server::ResponseStream> {
                        fuzz::fail("an admin route opened a stream");
                      });
  routes.serve(std::move(req), reply);
  const server::Response response = done.get();
  const int status = static_cast<int>(response.result_int());
  if (status >= 500) fuzz::fail("admin answered " + std::to_string(status) + ": " + response.body());
  const auto answer = nlohmann::json::parse(response.body(), nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) fuzz::fail("admin answer is not a JSON object: " + response.body());
  const bool changes_nothing = status >= 400 || method == "GET";
  if (status >= 400 && controller->status().to_json() != fresh_status) {
    fuzz::fail("a " + method + " answered " + std::to_string(status) + " changed the rollout state: " + response.body());
  }
  if (!changes_nothing) controller.reset();  // the next input gets a new one
  return 0;
}

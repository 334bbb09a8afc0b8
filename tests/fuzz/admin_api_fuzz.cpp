// Fuzzes admin API requests (daemon/server/admin_routes.cpp, admin_rollout.cpp) through
// AdminRoutes::serve as the admin listener calls it: route and method lookup, the JSON body
// check, then the handler on the worker pool turning the body or query into a typed
// RolloutController call (start/update, rollback, promote, pause, resume, report) against a real
// controller over an in-memory metrics database, built from configs/default.yaml as the daemon
// builds it. Bad requests must be 4xx answers: the pool catches a handler's std::exception and
// answers 500 "admin request failed", which here counts as a bug (a request the handler did not
// validate).
// Input: "METHOD /target" on the first line, then the body.
#include <cstdint>
#include <future>
#include <string>

#include "daemon/config/config.h"
#include "daemon/server/admin_routes.h"
#include "daemon/server/rollout_settings.h"
#include "tests/fuzz/fuzz_input.h"

using namespace pipelined;
namespace http = boost::beast::http;

namespace {

rollout::RolloutSettings settings() {
  auto loaded = config::load_file(PIPELINED_SOURCE_DIR "/configs/default.yaml");
  if (!loaded.errors.empty()) fuzz::fail("configs/default.yaml: " + loaded.errors.front().to_string());
  auto s = server::rollout_settings(*loaded.config);
  s.database = ":memory:";  // no disk, nothing left behind; the schema migrations still run
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const rollout::RolloutSettings kSettings = settings();
  static pool::WorkerPool pool(1);
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::size_t eol = text.find('\n');
  const std::string line = text.substr(0, eol);
  const std::string body = eol == std::string::npos ? "" : text.substr(eol + 1);
  const std::size_t space = line.find(' ');
  server::Request req;
  req.method_string(space == std::string::npos ? "POST" : line.substr(0, space));
  const std::string target = space == std::string::npos ? line : line.substr(space + 1);
  if (target.find_first_of("\r\n") != std::string::npos) return 0;  // Beast's parser never yields such a target
  req.target(target);
  req.version(11);
  req.body() = body;
  req.prepare_payload();

  // A fresh controller per input: each input is one request against the same state, so a crash reproduces.
  rollout::RolloutController controller(kSettings);
  server::AdminRoutes routes(server::rollout_routes(controller, [](const std::string&, nlohmann::json&) {}), pool);
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
  return 0;
}

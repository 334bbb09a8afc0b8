// pipectl: the operator's tool for a running pipelined, over its admin listener.
// Exit codes: 0 done, 1 the daemon refused (its message is printed), 2 usage error, 3 the daemon
// cannot be reached, 4 the daemon's answer was not understood, 5 an output file cannot be written.
// See docs/pipectl.md.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "admin-cli/format.h"
#include "admin-cli/html_report.h"
#include "common/duration.h"

namespace net = boost::asio;
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

enum Exit { kOk = 0, kRefused = 1, kUsage = 2, kUnreachable = 3, kMalformed = 4, kOutput = 5 };

struct Target {
  std::string socket;
  std::string url;  // http://127.0.0.1:PORT
  std::string token;
};

struct Answer {
  int status = 0;
  json body;
};

struct Failure {
  Exit code;
  std::string message;
};

template <class Socket>
Answer exchange(Socket& socket, const Target& t, http::verb method, const std::string& target, const json& body) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "pipelined");
  req.set(http::field::user_agent, "pipectl");
  if (!t.token.empty()) req.set(http::field::authorization, "Bearer " + t.token);
  if (!body.is_null()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body.dump();
  }
  req.prepare_payload();
  http::write(socket, req);
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(socket, buffer, parser);
  auto res = parser.release();
  Answer a;
  a.status = res.result_int();
  a.body = json::parse(res.body(), nullptr, false);
  if (a.body.is_discarded()) throw Failure{kMalformed, "pipectl: the daemon's answer is not JSON (HTTP " + std::to_string(a.status) + ")"};
  return a;
}

Answer call(const Target& t, http::verb method, const std::string& target, const json& body = nullptr) {
  net::io_context io;
  boost::system::error_code ec;
  if (!t.url.empty()) {
    const std::string rest = t.url.rfind("http://", 0) == 0 ? t.url.substr(7) : t.url;
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) throw Failure{kUsage, "pipectl: --url must look like http://127.0.0.1:8081"};
    net::ip::tcp::socket socket(io);
    net::ip::tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(rest.substr(0, colon), rest.substr(colon + 1, rest.find('/', colon) - colon - 1), ec);
    if (!ec) net::connect(socket, endpoints, ec);
    if (ec) throw Failure{kUnreachable, "pipectl: cannot reach pipelined at " + t.url + ": " + ec.message() + " (is the daemon running?)"};
    return exchange(socket, t, method, target, body);
  }
  if (::access(t.socket.c_str(), F_OK) != 0)
    throw Failure{kUnreachable, "pipectl: cannot reach pipelined at " + t.socket + ": no such socket (is the daemon running?)"};
  net::local::stream_protocol::socket socket(io);
  socket.connect(net::local::stream_protocol::endpoint(t.socket), ec);
  if (ec) {
    const std::string why = ec == boost::system::errc::permission_denied ? "permission denied (the socket is mode 0600: run as the daemon's user)"
                                                                           : ec.message() + " (is the daemon running?)";
    throw Failure{kUnreachable, "pipectl: cannot reach pipelined at " + t.socket + ": " + why};
  }
  return exchange(socket, t, method, target, body);
}

// --since and --dwell: the shared duration grammar (common/duration.h); anything else is a usage error.
const CLI::Validator kDuration(
    [](std::string& text) -> std::string {
      if (pipelined::common::parse_duration(text)) return {};
      return "'" + text + "' is not a duration (use a number and a unit: 250ms, 30s, 15m, 1.5h, 7d)";
    },
    "DURATION");

std::string actor() {
  const char* user = std::getenv("USER");
  return user && *user ? user : "pipectl";
}

// The admin socket when neither --socket nor $PIPELINED_ADMIN_SOCKET names one: a source tree's
// daemon's (scripts/run on configs/default.yaml: var/admin.sock under the current directory) when
// that exists, else the package's (/etc/pipelined/pipelined.yaml; PIPELINED_PACKAGE_ADMIN_SOCKET is
// set from the same CMake variable as the installed config's path).
std::string default_socket() {
  if (const char* env = std::getenv("PIPELINED_ADMIN_SOCKET"); env != nullptr && *env != '\0') return env;
  if (::access("var/admin.sock", F_OK) == 0) return "var/admin.sock";
  return PIPELINED_PACKAGE_ADMIN_SOCKET;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pipectl: operate a running pipelined (rollouts, reports, plugins)"};
  app.require_subcommand(1);
  // Global options may also come after the command: a subcommand passes what it does not know to
  // the app (inherited by every subcommand added below).
  app.fallthrough();
  app.footer("Global options (--socket, --url, --token, --json) go before or after the command.");
  Target target;
  const char* env_token = std::getenv("PIPELINED_ADMIN_TOKEN");
  target.socket = default_socket();
  target.token = env_token ? env_token : "";
  bool as_json = false;
  app.add_option("--socket", target.socket,
                 "admin Unix socket (default $PIPELINED_ADMIN_SOCKET, else var/admin.sock when it exists, else " PIPELINED_PACKAGE_ADMIN_SOCKET ")");
  app.add_option("--url", target.url, "admin TCP listener, e.g. http://127.0.0.1:8081 (instead of the socket)");
  app.add_option("--token", target.token, "bearer token for --url (default $PIPELINED_ADMIN_TOKEN)");
  app.add_flag("--json", as_json, "print the daemon's JSON answer");

  auto* status = app.add_subcommand("status", "daemon, plugins and rollouts at a glance");

  auto* rollout = app.add_subcommand("rollout", "send a share of traffic to the candidate variants");
  double percent = -1, shadow = 0;
  std::string pipeline, reason, steps_text, dwell;
  std::vector<std::string> stages, variants;
  rollout->add_option("--percent", percent, "candidate share, 0-100 (two decimals)")->required()->check(CLI::Range(0.0, 100.0));
  rollout->add_option("--pipeline", pipeline, "pipeline (needed when there are several)");
  rollout->add_option("--stage", stages, "stage to switch (repeat; pairs with --variant)");
  rollout->add_option("--variant", variants, "candidate variant of the --stage at the same position");
  rollout->add_option("--shadow", shadow, "share of stable requests that also run the candidate, compared, never answered")->check(CLI::Range(0.0, 100.0));
  rollout->add_option("--steps", steps_text, "automatic steps, e.g. 5,25,50,100");
  rollout->add_option("--dwell", dwell, "time at each step before the next, e.g. 1h, 90m, 1.5h")->check(kDuration);
  rollout->add_option("--reason", reason, "why, for the history");

  auto* rollback = app.add_subcommand("rollback", "every request back to stable, now");
  rollback->add_option("--pipeline", pipeline, "only this pipeline (default: every live rollout)");
  rollback->add_option("--reason", reason, "why, for the history");
  auto* promote = app.add_subcommand("promote", "the candidate variants become stable");
  auto* pause = app.add_subcommand("pause", "freeze the share and the step schedule");
  auto* resume = app.add_subcommand("resume", "continue a paused rollout");
  for (auto* sub : {promote, pause, resume}) {
    sub->add_option("--pipeline", pipeline, "pipeline (needed when several rollouts are live)");
    sub->add_option("--reason", reason, "why, for the history");
  }

  auto* report = app.add_subcommand("report", "per-arm figures and a verdict, from the metrics database");
  std::string since = "1h", format = "table";
  report->add_option("--since", since, "window: 250ms, 30s, 15m, 1.5h, 7d")->check(kDuration)->capture_default_str();
  report->add_option("--pipeline", pipeline, "only this pipeline");
  std::int64_t rollout_id = 0;
  report->add_option("--rollout", rollout_id, "this rollout (default: each pipeline's latest)")->check(CLI::PositiveNumber);
  report->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}))->capture_default_str();
  std::string html_file;
  report->add_option("--html", html_file, "write the report as a self-contained HTML page with charts to FILE (instead of the table)");

  auto* plugins = app.add_subcommand("plugins", "loaded plugins; 'plugins reload [NAME...]' loads new builds");
  std::vector<std::string> plugin_args;
  plugins->add_option("action", plugin_args, "reload [NAME...]");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }

  try {
    Answer a;
    std::string (*formatter)(const json&) = pipectl::format_rollout;
    if (status->parsed()) {
      a = call(target, http::verb::get, "/admin/status");
      formatter = pipectl::format_status;
    } else if (rollout->parsed()) {
      if (stages.size() != variants.size()) throw Failure{kUsage, "pipectl: give one --variant for each --stage"};
      json body = {{"percent", percent}, {"actor", actor()}, {"reason", reason}};
      if (!pipeline.empty()) body["pipeline"] = pipeline;
      if (shadow > 0) body["shadow_percent"] = shadow;
      if (!stages.empty()) {
        body["stages"] = json::object();
        for (std::size_t i = 0; i < stages.size(); ++i) body["stages"][stages[i]] = variants[i];
      }
      if (!steps_text.empty()) {
        json steps = json::array();
        std::stringstream in(steps_text);
        for (std::string item; std::getline(in, item, ',');) {
          char* end = nullptr;
          const double v = std::strtod(item.c_str(), &end);
          if (item.empty() || *end != '\0') throw Failure{kUsage, "pipectl: --steps wants numbers like 5,25,50,100"};
          steps.push_back(v);
        }
        body["steps"] = steps;
      }
      if (!dwell.empty()) body["dwell_ms"] = pipelined::common::parse_duration(dwell)->count();  // checked by kDuration
      a = call(target, http::verb::post, "/admin/rollout", body);
    } else if (rollback->parsed() || promote->parsed() || pause->parsed() || resume->parsed()) {
      const std::string action = rollback->parsed() ? "rollback" : promote->parsed() ? "promote" : pause->parsed() ? "pause" : "resume";
      json body = {{"actor", actor()}, {"reason", reason}};
      if (!pipeline.empty()) body["pipeline"] = pipeline;
      a = call(target, http::verb::post, "/admin/rollout/" + action, body);
    } else if (report->parsed()) {
      // Sent in its shortest form ("1.5h" -> "90m"): plain characters, no URL escaping.
      std::string path = "/admin/report?since=" + pipelined::common::format_duration(*pipelined::common::parse_duration(since));
      if (!pipeline.empty()) path += "&pipeline=" + pipeline;
      if (rollout_id > 0) path += "&rollout=" + std::to_string(rollout_id);
      a = call(target, http::verb::get, path);
      formatter = pipectl::format_report;
      as_json = as_json || format == "json";
    } else {
      formatter = pipectl::format_plugins;
      if (plugin_args.empty()) {
        a = call(target, http::verb::get, "/admin/plugins");
      } else if (plugin_args[0] == "reload") {
        json body = json::object();
        if (plugin_args.size() > 1) body["plugins"] = std::vector<std::string>(plugin_args.begin() + 1, plugin_args.end());
        a = call(target, http::verb::post, "/admin/plugins/reload", body);
      } else {
        throw Failure{kUsage, "pipectl: unknown plugins action '" + plugin_args[0] + "' (use: plugins, plugins reload [NAME...])"};
      }
    }
    if (a.status >= 300) {
      if (as_json) std::cout << a.body.dump(2) << "\n";
      std::string message = a.body.contains("error") ? a.body["error"].value("message", a.body.dump()) : a.body.dump();
      std::cerr << "pipectl: the daemon refused (HTTP " << a.status << "): " << message << "\n";
      for (const auto& e : a.body.value("errors", json::array())) std::cerr << "  " << e.dump() << "\n";
      return kRefused;
    }
    if (!html_file.empty()) {
      std::ofstream page(html_file, std::ios::binary | std::ios::trunc);
      page << pipectl::html_report(a.body);
      page.close();
      if (!page) throw Failure{kOutput, "pipectl: cannot write " + html_file + ": " + std::strerror(errno)};
      if (!as_json) {  // the page instead of the table; --json still prints the document it was made from
        std::cout << "wrote " << html_file << "\n";
        return kOk;
      }
    }
    if (as_json) std::cout << a.body.dump(2) << "\n";
    else std::cout << formatter(a.body);
    return kOk;
  } catch (const Failure& f) {
    std::cerr << f.message << "\n";
    return f.code;
  } catch (const boost::system::system_error& e) {
    std::cerr << "pipectl: connection to pipelined failed: " << e.what() << "\n";
    return kUnreachable;
  } catch (const std::exception& e) {
    std::cerr << "pipectl: " << e.what() << "\n";
    return kMalformed;
  }
}

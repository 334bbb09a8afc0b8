// provider-sim: the AI providers' APIs on loopback, for offline runs, tests and benchmarks.
// OpenAI chat completions and image generation, Google Cloud Translation v2, Gemini
// generateContent; a latency model per endpoint (scaled by --time-scale), rate limits answered
// with 429 + Retry-After, fault injection, and counters at GET /_sim/stats. See docs/provider-sim.md.
#include <CLI/CLI.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>

#include "provider-sim/answer_log.h"
#include "provider-sim/content.h"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using provider_sim::json;
using Clock = std::chrono::steady_clock;

namespace {

// The source tree's glossary for a build-tree binary; an installed one (which the source tree may
// not be beside) has its copy in <prefix>/share/pipelined/provider-sim.
std::string default_glossary() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto installed = exe.parent_path().parent_path() / "share/pipelined/provider-sim/glossary.tsv";
  if (!ec && std::filesystem::exists(installed, ec)) return installed.string();
  return PROVIDER_SIM_DATA_DIR "/glossary.tsv";
}

struct Options {
  std::string listen = "127.0.0.1";
  unsigned short port = 9090;
  bool allow_remote = false;
  double time_scale = 1.0;
  double error_rate = 0, timeout_rate = 0, malformed_rate = 0, reset_rate = 0;
  unsigned seed = 1;
  int rpm_limit = 0;      // per endpoint, sliding 60 s window; 0 = none
  int max_in_flight = 0;  // per endpoint; 0 = none
  std::string fixtures;
  std::string glossary = default_glossary();
  std::string answer_log;  // empty: none (answer_log.h)
};

struct EndpointStats {
  std::uint64_t served = 0, rate_limited = 0, errors = 0, timeouts = 0, malformed = 0, resets = 0;
  std::map<int, std::uint64_t> statuses;
  int in_flight = 0, peak_in_flight = 0;
  std::deque<Clock::time_point> last_minute;  // admitted requests, for the per-minute limit
  std::size_t peak_per_minute = 0;
  json to_json() const {
    json s = json::object();
    for (const auto& [code, n] : statuses) s[std::to_string(code)] = n;
    return {{"served", served},       {"rate_limited", rate_limited}, {"errors", errors},
            {"timeouts", timeouts},   {"malformed", malformed},       {"resets", resets},         {"statuses", s},
            {"in_flight", in_flight}, {"peak_in_flight", peak_in_flight}, {"peak_per_minute", peak_per_minute}};
  }
};

// A tiny valid PNG (1x1, grey), served at the generated image URLs.
const unsigned char kPng[] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
                              0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3A, 0x7E, 0x9B,
                              0x55, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x68, 0x00, 0x00, 0x00,
                              0x82, 0x00, 0x81, 0x4C, 0x17, 0xD7, 0xDF, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
                              0x42, 0x60, 0x82};

using Response = http::response<http::string_body>;

struct Answer {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  double latency_ms = 0;  // before scaling
  bool hang = false;      // timeout fault: never answer
  bool reset = false;     // reset fault: close the connection at once without answering
  std::vector<std::pair<std::string, std::string>> headers;
};

class Simulator {
 public:
  explicit Simulator(Options o) : opt_(std::move(o)), rng_(opt_.seed), glossary_(provider_sim::Glossary::load(opt_.glossary)) {
    if (!opt_.fixtures.empty()) index_fixtures(opt_.fixtures);
  }

  std::size_t fixtures() const { return fixture_text_.size(); }
  void set_base_url(std::string url) { base_url_ = std::move(url); }
  std::uint64_t connections = 0;
  std::optional<provider_sim::AnswerLog> answer_log;

  // The endpoint a path belongs to, for limits and stats; "" for unknown paths.
  static std::string endpoint_of(const std::string& path) {
    if (path.find("/chat/completions") != std::string::npos) return "chat/completions";
    if (path.find("/images/generations") != std::string::npos) return "images/generations";
    if (path.find("/language/translate/v2") != std::string::npos) return "translate";
    if (path.find(":generateContent") != std::string::npos) return "generateContent";
    if (path.rfind("/images/", 0) == 0) return "images";
    return "";
  }

  EndpointStats& stats(const std::string& endpoint) { return stats_[endpoint]; }

  // Limits, faults and content for one request; stats are updated by the caller.
  Answer handle(const http::request<http::string_body>& req, const std::string& path, const std::string& endpoint) {
    if (path == "/_sim/stats") return {200, stats_json().dump()};
    if (path == "/_sim/reset") {
      // In place: requests in flight hold pointers to their endpoint's counters.
      for (auto& [name, s] : stats_) {
        const int in_flight = s.in_flight;
        s = EndpointStats{};
        s.in_flight = in_flight;
      }
      connections = 0;
      return {200, R"({"reset":true})"};
    }
    if (endpoint.empty()) return error(404, "not_found", "no such endpoint: " + path);
    if (endpoint == "images") {
      Answer a{200, std::string(reinterpret_cast<const char*>(kPng), sizeof kPng), "image/png"};
      return a;
    }
    EndpointStats& s = stats_[endpoint];
    if (opt_.max_in_flight > 0 && s.in_flight >= opt_.max_in_flight) return rate_limited(s, "too many requests in flight");
    if (opt_.rpm_limit > 0) {
      const auto now = Clock::now();
      while (!s.last_minute.empty() && now - s.last_minute.front() > std::chrono::seconds(60)) s.last_minute.pop_front();
      if (static_cast<int>(s.last_minute.size()) >= opt_.rpm_limit) return rate_limited(s, "requests per minute exceeded");
    }
    std::uniform_real_distribution<double> u(0, 1);
    const double fault = u(rng_);
    if (fault < opt_.error_rate) {
      ++s.errors;
      return error(500, "server_error", "simulated server error");
    }
    if (fault < opt_.error_rate + opt_.timeout_rate) {
      ++s.timeouts;
      Answer a;
      a.hang = true;
      return a;
    }
    if (fault < opt_.error_rate + opt_.timeout_rate + opt_.reset_rate) {
      ++s.resets;
      Answer a;
      a.reset = true;
      return a;
    }
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) return error(400, "invalid_request_error", "request body is not a JSON object");
    Answer a;
    try {
      if (endpoint == "chat/completions") a = chat(body);
      else if (endpoint == "images/generations") a = images(body);
      else if (endpoint == "translate") a = translate(body, std::string(req.target()));
      else a = generate_content(body);
    } catch (const std::exception& e) {
      return error(400, "invalid_request_error", e.what());
    }
    if (fault < opt_.error_rate + opt_.timeout_rate + opt_.reset_rate + opt_.malformed_rate) {
      ++s.malformed;
      a.body = "{\"choices\": [ this is not JSON";
    }
    a.latency_ms *= std::uniform_real_distribution<double>(0.9, 1.1)(rng_);  // jitter ±10 %
    return a;
  }

  double time_scale() const { return opt_.time_scale; }

 private:
  static Answer error(int status, const std::string& type, const std::string& message) {
    return {status, json{{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}}.dump()};
  }

  Answer rate_limited(EndpointStats& s, const std::string& why) {
    ++s.rate_limited;
    Answer a = error(429, "rate_limit_exceeded", why);
    // One simulated second, scaled like every other latency.
    const double seconds = std::max(0.001, opt_.time_scale);
    char value[32];
    std::snprintf(value, sizeof value, opt_.time_scale >= 1 ? "%.0f" : "%.3f", seconds);
    a.headers = {{"Retry-After", value}, {"retry-after-ms", std::to_string(static_cast<long>(seconds * 1000))}};
    return a;
  }

  Answer chat(const json& body) {
    const std::string model = body.value("model", "gpt-4o-mini");
    std::string user;
    for (const auto& m : body.value("messages", json::array()))
      if (m.value("role", "") == "user" && m["content"].is_string()) user = m["content"].get<std::string>();
    json message = {{"role", "assistant"}};
    std::string finish = "stop";
    std::string content;
    if (body.contains("tools") && body["tools"].is_array() && !body["tools"].empty()) {
      const json& fn = body["tools"][0]["function"];
      json arguments = provider_sim::conforming_value(fn.value("parameters", json::object()));
      content = arguments.dump();
      message["content"] = nullptr;
      message["tool_calls"] = json::array({{{"id", "call_sim_" + std::to_string(++counter_)}, {"type", "function"},
                                            {"function", {{"name", fn.value("name", "tool")}, {"arguments", content}}}}});
      finish = "tool_calls";
    } else {
      const json format = body.value("response_format", json::object());
      if (format.value("type", "") == "json_schema") {
        const json& js = format["json_schema"];
        const std::string name = js.value("name", "");
        json data = json::parse(user, nullptr, false);
        if (data.is_discarded()) data = json::object();
        json out;
        if (name == "menu_categories") out = provider_sim::menu_categories(data);
        else if (name == "menu_translations") out = provider_sim::menu_translations(data, glossary_);
        else if (name == "menu_descriptions") out = provider_sim::menu_descriptions(data);
        else if (name == "medicine_matches") out = provider_sim::medicine_matches(data);
        else out = provider_sim::conforming_value(js.value("schema", json::object()));
        content = out.dump();
      } else {
        content = "This is provider-sim. You said: " + user.substr(0, 200);
      }
      message["content"] = content;
    }
    const int completion_tokens = static_cast<int>(content.size() / 4 + 1);
    const int prompt_tokens = static_cast<int>(user.size() / 4 + 1);
    json response = {{"id", "chatcmpl-sim-" + std::to_string(++counter_)},
                     {"object", "chat.completion"},
                     {"created", std::time(nullptr)},
                     {"model", model},
                     {"choices", json::array({{{"index", 0}, {"message", message}, {"logprobs", nullptr}, {"finish_reason", finish}}})},
                     {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
                                {"total_tokens", prompt_tokens + completion_tokens}}}};
    return {200, response.dump(), "application/json", 700.0 + 12.0 * completion_tokens};
  }

  Answer images(const json& body) {
    const std::string prompt = body.value("prompt", "");
    if (prompt.empty()) throw std::invalid_argument("'prompt' is required");
    const int n = std::max(1, body.value("n", 1));
    json data = json::array();
    for (int i = 0; i < n; ++i)
      data.push_back({{"url", base_url_ + "/images/" + provider_sim::sha256_hex(prompt + "#" + std::to_string(i)).substr(0, 32) + ".png"},
                      {"revised_prompt", prompt}});
    return {200, json{{"created", std::time(nullptr)}, {"data", data}}.dump(), "application/json", 6000.0};
  }

  Answer translate(const json& body, const std::string& target) {
    if (target.find("key=") == std::string::npos) return error(403, "PERMISSION_DENIED", "missing key query parameter");
    json q = body.value("q", json::array());
    if (q.is_string()) q = json::array({q});
    const std::string to = body.value("target", "");
    if (to.empty()) throw std::invalid_argument("'target' is required");
    json translations = json::array();
    for (const auto& text : q) {
      const std::string t = text.is_string() ? text.get<std::string>() : text.dump();
      translations.push_back({{"translatedText", to == "en" ? glossary_.translate(t) : t},
                              {"detectedSourceLanguage", provider_sim::detect_language(t)}});
    }
    return {200, json{{"data", {{"translations", translations}}}}.dump(), "application/json", 150.0 + 4.0 * q.size()};
  }

  Answer generate_content(const json& body) {
    std::vector<std::string> texts;
    bool want_json = body.value("generationConfig", json::object()).value("responseMimeType", "") == "application/json";
    for (const auto& content : body.value("contents", json::array())) {
      for (const auto& part : content.value("parts", json::array())) {
        const json inline_data = part.contains("inline_data") ? part["inline_data"] : part.value("inlineData", json());
        if (!inline_data.is_object()) continue;
        auto bytes = provider_sim::base64_decode(inline_data.value("data", ""));
        if (!bytes) throw std::invalid_argument("inline_data.data is not valid base64");
        auto it = fixture_text_.find(provider_sim::sha256_hex(*bytes));
        texts.push_back(it == fixture_text_.end() ? "" : it->second);
      }
    }
    std::string text;
    if (want_json) {
      text = json(texts).dump();
    } else {
      for (const auto& t : texts) text += (text.empty() ? "" : "\n\n") + t;
    }
    json response = {{"candidates", json::array({{{"content", {{"parts", json::array({{{"text", text}}})}, {"role", "model"}}},
                                                  {"finishReason", "STOP"}, {"index", 0}}})},
                     {"usageMetadata", {{"promptTokenCount", 258 * texts.size() + 50},
                                        {"candidatesTokenCount", text.size() / 4 + 1},
                                        {"totalTokenCount", 258 * texts.size() + 50 + text.size() / 4 + 1}}}};
    return {200, response.dump(), "application/json", 1500.0 + 500.0 * texts.size()};
  }

  void index_fixtures(const std::string& dir) {
    namespace fs = std::filesystem;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      const auto& p = entry.path();
      if (!entry.is_regular_file() || p.extension() == ".txt") continue;
      fs::path sidecar = p;
      sidecar.replace_extension(".txt");
      if (!fs::exists(sidecar)) continue;
      std::ifstream image(p, std::ios::binary), text(sidecar);
      const std::string bytes((std::istreambuf_iterator<char>(image)), {});
      std::string t((std::istreambuf_iterator<char>(text)), {});
      while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
      fixture_text_[provider_sim::sha256_hex(bytes)] = t;
    }
  }

  json stats_json() const {
    json endpoints = json::object();
    for (const auto& [name, s] : stats_) endpoints[name] = s.to_json();
    return {{"endpoints", endpoints}, {"connections", connections}};
  }

  Options opt_;
  std::mt19937_64 rng_;
  provider_sim::Glossary glossary_;
  std::map<std::string, std::string> fixture_text_;
  std::map<std::string, EndpointStats> stats_;
  std::string base_url_;
  std::uint64_t counter_ = 0;
};

// One connection; everything runs on the single I/O thread, so the simulator needs no locks.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Simulator& sim) : stream_(std::move(socket)), timer_(stream_.get_executor()), sim_(sim) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(256 << 20);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      self->serve(self->parser_->release());
    });
  }

 private:
  void serve(http::request<http::string_body> req) {
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    const std::string endpoint = Simulator::endpoint_of(path);
    Answer a = sim_.handle(req, path, endpoint);
    const bool counted = !endpoint.empty() && endpoint != "images";
    EndpointStats* s = counted ? &sim_.stats(endpoint) : nullptr;
    if (a.reset) {
      // Reset fault: linger 0 makes close() send RST, as a provider's dropped connection looks to a client.
      beast::error_code ec;
      stream_.socket().set_option(net::socket_base::linger(true, 0), ec);
      stream_.socket().close(ec);
      return;
    }
    if (s && a.status != 429) {
      ++s->in_flight;
      s->peak_in_flight = std::max(s->peak_in_flight, s->in_flight);
      s->last_minute.push_back(Clock::now());
      s->peak_per_minute = std::max(s->peak_per_minute, s->last_minute.size());
    }
    auto respond = [self = shared_from_this(), req = std::move(req), a, s, endpoint]() {
      if (s && a.status != 429) --s->in_flight;
      if (s) {
        ++s->served;
        ++s->statuses[a.status];
      }
      auto res = std::make_shared<Response>(static_cast<http::status>(a.status), req.version());
      res->set(http::field::content_type, a.content_type);
      for (const auto& [k, v] : a.headers) res->set(k, v);
      res->keep_alive(req.keep_alive());
      res->body() = a.body;
      res->prepare_payload();
      if (self->sim_.answer_log) self->sim_.answer_log->record(endpoint, a.status, res->body());
      http::async_write(self->stream_, *res, [self, res](beast::error_code ec, std::size_t) {
        if (ec || res->need_eof()) return self->close();
        self->read();
      });
    };
    if (a.hang) {
      // Timeout fault: no answer; the connection is dropped when the client gives up.
      if (s) --s->in_flight;
      return hold();
    }
    const double ms = a.latency_ms * sim_.time_scale();
    if (ms < 0.5) return respond();
    timer_.expires_after(std::chrono::microseconds(static_cast<long long>(ms * 1000)));
    timer_.async_wait([respond = std::move(respond)](beast::error_code ec) {
      if (!ec) respond();
    });
  }

  void hold() {
    auto self = shared_from_this();
    stream_.socket().async_wait(tcp::socket::wait_read, [self](beast::error_code) { self->close(); });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  beast::tcp_stream stream_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Simulator& sim_;
};

void accept(tcp::acceptor& acceptor, Simulator& sim) {
  acceptor.async_accept([&acceptor, &sim](beast::error_code ec, tcp::socket socket) {
    if (!ec) {
      ++sim.connections;
      std::make_shared<Session>(std::move(socket), sim)->read();
    }
    accept(acceptor, sim);
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"provider-sim: OpenAI, Google Translate v2 and Gemini APIs on loopback, with latency, limits and faults"};
  app.add_option("--listen", opt.listen, "address to listen on (loopback unless --allow-remote)")->capture_default_str();
  app.add_option("--port", opt.port, "port; 0 picks a free one")->capture_default_str();
  app.add_flag("--allow-remote", opt.allow_remote, "allow a non-loopback --listen address");
  app.add_option("--time-scale", opt.time_scale, "multiplies every latency; 0 answers at once")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--error-rate", opt.error_rate, "share of requests answered 500")->check(CLI::Range(0.0, 1.0));
  app.add_option("--timeout-rate", opt.timeout_rate, "share of requests never answered")->check(CLI::Range(0.0, 1.0));
  app.add_option("--reset-rate", opt.reset_rate, "share of requests whose connection is closed (RST) without an answer")->check(CLI::Range(0.0, 1.0));
  app.add_option("--malformed-rate", opt.malformed_rate, "share of requests answered 200 with a body that is not JSON")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", opt.seed, "seed of faults and jitter")->capture_default_str();
  app.add_option("--rpm-limit", opt.rpm_limit, "requests per minute per endpoint before 429")->check(CLI::NonNegativeNumber);
  app.add_option("--max-in-flight", opt.max_in_flight, "requests in flight per endpoint before 429")->check(CLI::NonNegativeNumber);
  app.add_option("--fixtures", opt.fixtures, "directory of images with <image>.txt sidecars, answered by Gemini OCR")->check(CLI::ExistingDirectory);
  app.add_option("--glossary", opt.glossary, "translation glossary (TSV)")->capture_default_str();
  app.add_option("--answer-log", opt.answer_log, "write a line per answer sent (monotonic ns, endpoint, status, image URLs) to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    net::io_context io(1);
    const auto address = net::ip::make_address(opt.listen);
    if (!address.is_loopback() && !opt.allow_remote) {
      std::fprintf(stderr, "provider-sim: %s is not a loopback address (use --allow-remote)\n", opt.listen.c_str());
      return 2;
    }
    Simulator sim(opt);
    if (!opt.answer_log.empty()) sim.answer_log.emplace(opt.answer_log);
    tcp::acceptor acceptor(io, {address, opt.port});
    const unsigned short port = acceptor.local_endpoint().port();
    sim.set_base_url("http://" + opt.listen + ":" + std::to_string(port));
    std::printf("listening on %s:%u\n", opt.listen.c_str(), port);
    std::fflush(stdout);
    std::fprintf(stderr, "provider-sim: %zu fixture images, time scale %g\n", sim.fixtures(), opt.time_scale);
    accept(acceptor, sim);
    net::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&io](beast::error_code, int) { io.stop(); });
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "provider-sim: %s\n", e.what());
    return 1;
  }
  return 0;
}

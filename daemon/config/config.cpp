#include "daemon/config/config.h"

#include "daemon/config/pipelines_reader.h"
#include "daemon/config/yaml_reader.h"

#include <spdlog/spdlog.h>

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace pipelined::config {

const VariantConfig* StageConfig::variant(const std::string& variant_name) const {
  for (const auto& v : variants)
    if (v.name == variant_name) return &v;
  return nullptr;
}

const StageConfig* PipelineConfig::stage(const std::string& stage_name) const {
  for (const auto& s : stages)
    if (s.name == stage_name) return &s;
  return nullptr;
}

const PipelineConfig* Config::pipeline(const std::string& name) const {
  for (const auto& p : pipelines)
    if (p.name == name) return &p;
  return nullptr;
}

std::string ConfigError::to_string() const {
  std::ostringstream out;
  out << file;
  if (line > 0) out << ':' << line << ':' << column;
  out << ": ";
  if (!key.empty()) out << key << ": ";
  out << message;
  return out.str();
}

std::string parse_redis_url(const std::string& url, SharedLimitsConfig& out) {
  constexpr std::string_view kScheme = "redis://";
  if (url.rfind(kScheme, 0) != 0) return "expected redis://[:password@]host[:port][/db], got '" + url + "'";
  std::string rest = url.substr(kScheme.size());
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string user_info = rest.substr(0, at);
    const auto colon = user_info.find(':');
    out.password = colon == std::string::npos ? user_info : user_info.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  std::string db;
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  auto number = [](const std::string& s, int lo, int hi, int& v) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 9) return false;
    v = std::stoi(s);
    return v >= lo && v <= hi;
  };
  out.port = 6379;
  std::optional<std::string> port;  // set when the URL has ":port"
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
    const auto close = rest.find(']');
    if (close == std::string::npos || (close + 1 < rest.size() && rest[close + 1] != ':')) return "bad IPv6 host in '" + url + "'";
    if (close + 1 < rest.size()) port = rest.substr(close + 2);
    rest = rest.substr(1, close - 1);
  } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (port && !number(*port, 1, 65535, out.port)) return "bad port in '" + url + "'";
  if (rest.empty()) return "no host in '" + url + "'";
  out.host = rest;
  out.db = 0;
  if (!db.empty() && !number(db, 0, 1 << 20, out.db)) return "bad database number in '" + url + "'";
  return "";
}

namespace {

using detail::check_graph;
using detail::check_template;
using detail::join_key;
using detail::read_endpoint;
using detail::read_pipeline;
using detail::Reader;

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

void read_server(Reader& r, const YAML::Node& n, const std::string& k, ServerConfig& s) {
  r.read_map(n, k,
             {{"listen", [&](auto& fn, auto& fk) { r.read_host_port(fn, fk, s.listen_address, s.listen_port); }},
              {"io_threads", [&](auto& fn, auto& fk) { r.read_int(fn, fk, s.io_threads, 1, 256); }},
              {"body_limit_bytes", [&](auto& fn, auto& fk) { r.read_int(fn, fk, s.body_limit_bytes, 1, 1LL << 34); }},
              {"header_limit_bytes", [&](auto& fn, auto& fk) { r.read_int(fn, fk, s.header_limit_bytes, 256, 1 << 24); }},
              {"read_timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, s.read_timeout); }},
              {"idle_timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, s.idle_timeout); }},
              {"request_timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, s.request_timeout); }},
              {"drain_timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, s.drain_timeout, 0); }},
              {"request_log", [&](auto& fn, auto& fk) { r.read(fn, fk, s.request_log); }},
              {"sse_keepalive_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, s.sse_keepalive); }},
              {"demo", [&](auto& fn, auto& fk) { r.read(fn, fk, s.demo); }},
              {"max_request_memory_mb", [&](auto& fn, auto& fk) { r.read_int(fn, fk, s.max_request_memory_mb, 0, 1LL << 30); }}});
}

// socket_set: the file names admin.socket (otherwise it is derived from state_directory).
void read_admin(Reader& r, const YAML::Node& n, const std::string& k, AdminConfig& a, bool& socket_set) {
  r.read_map(n, k,
             {{"socket", [&](auto& fn, auto& fk) {
                 r.read(fn, fk, a.socket_path);
                 socket_set = true;
               }},
              {"tcp", [&](auto& fn, auto& fk) { r.read_host_port(fn, fk, a.tcp_address, a.tcp_port); }},
              {"token", [&](auto& fn, auto& fk) { r.read(fn, fk, a.token); }}});
}

void read_providers(Reader& r, const YAML::Node& n, const std::string& k, std::map<std::string, ProviderConfig>& providers) {
  r.read_named(n, k, "providers", [&](const std::string& name, const YAML::Node& pn, const std::string& pk) {
    ProviderConfig p;
    p.name = name;
    r.read_map(pn, pk,
               {{"base_url", [&](auto& fn, auto& fk) { r.read(fn, fk, p.base_url); }},
                {"api_key", [&](auto& fn, auto& fk) { r.read(fn, fk, p.api_key); }},
                {"auth_header", [&](auto& fn, auto& fk) { r.read(fn, fk, p.auth_header); }},
                {"timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, p.timeout); }},
                {"max_in_flight", [&](auto& fn, auto& fk) { r.read_int(fn, fk, p.max_in_flight, 1, 10000); }},
                {"requests_per_minute", [&](auto& fn, auto& fk) { r.read_double(fn, fk, p.requests_per_minute, 0, 1e9); }},
                {"max_retries", [&](auto& fn, auto& fk) { r.read_int(fn, fk, p.max_retries, 0, 100); }},
                {"backoff_base_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, p.backoff_base); }},
                {"backoff_max_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, p.backoff_max); }},
                {"queue_order", [&](auto& fn, auto& fk) {
                   using Order = ProviderConfig::QueueOrder;
                   r.read_choice(fn, fk, {{"request", Order::Request}, {"arrival", Order::Arrival}}, p.queue_order);
                 }}});
    if (p.base_url.empty()) r.error(pn, pk, "a provider needs 'base_url'");
    providers[p.name] = std::move(p);
  });
}

// database_set: the file names metrics.database; listen_node: where metrics.listen is, for read_root's check.
void read_metrics(Reader& r, const YAML::Node& n, const std::string& k, MetricsConfig& m, bool& database_set, YAML::Node& listen_node) {
  r.read_map(n, k,
             {{"database", [&](auto& fn, auto& fk) {
                 r.read(fn, fk, m.database);
                 database_set = true;
               }},
              {"retention_days", [&](auto& fn, auto& fk) { r.read_int(fn, fk, m.retention_days, 1, 36500); }},
              {"queue_capacity", [&](auto& fn, auto& fk) { r.read_int(fn, fk, m.queue_capacity, 1, 100000000); }},
              {"flush_interval_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, m.flush_interval); }},
              {"listen", [&](auto& fn, auto& fk) {
                 r.read_host_port(fn, fk, m.listen_address, m.listen_port);
                 listen_node = fn;
               }}});
}

void read_replica(Reader& r, const YAML::Node& n, const std::string& k, ReplicaConfig& rp) {
  r.read_map(n, k,
             {{"id", [&](auto& fn, auto& fk) { r.read(fn, fk, rp.id); }},
              {"poll_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, rp.poll); }},
              {"timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, rp.timeout); }}});
}

void read_rollout(Reader& r, const YAML::Node& n, const std::string& k, RolloutConfig& ro) {
  r.read_map(n, k,
             {{"sticky_key", [&](auto& fn, auto& fk) {
                 r.read(fn, fk, ro.sticky_key);
                 const auto& s = ro.sticky_key;
                 const bool ok = s.empty() || ((s.rfind("header:", 0) == 0 && s.size() > 7) ||
                                               (s.rfind("cookie:", 0) == 0 && s.size() > 7) ||
                                               (s.rfind("json:", 0) == 0 && s.size() > 5));
                 if (!ok) r.error(fn, fk, "expected header:NAME, cookie:NAME or json:FIELD, got '" + s + "'");
               }},
              {"allow_force_header", [&](auto& fn, auto& fk) { r.read(fn, fk, ro.allow_force_header); }},
              {"guardrail_interval_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, ro.guardrail_interval); }},
              // Read and dropped: decisions are sequential over the whole rollout since 0.2 (docs/rollout.md).
              {"guardrail_window_ms", [&](auto& fn, auto& fk) {
                 Millis ignored{0};
                 r.read_millis(fn, fk, ignored);
                 spdlog::warn("{}: ignored: the guardrails judge the whole rollout (docs/rollout.md)", fk);
               }},
              {"min_samples_per_arm", [&](auto& fn, auto& fk) { r.read_int(fn, fk, ro.min_samples_per_arm, 1, 100000000); }},
              {"min_success_rate", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.min_success_rate, 0, 1); }},
              {"alpha", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.alpha, 1e-6, 0.5); }},
              {"srm_alpha", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.srm_alpha, 1e-9, 0.5); }},
              {"hard_min_success_rate", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.hard_min_success_rate, 0, 1); }},
              {"hard_min_requests", [&](auto& fn, auto& fk) { r.read_int(fn, fk, ro.hard_min_requests, 1, 100000000); }},
              {"max_crashed_requests", [&](auto& fn, auto& fk) { r.read_int(fn, fk, ro.max_crashed_requests, 1, 100000000); }},
              {"min_time_saved", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.min_time_saved, -1, 1); }},
              {"max_memory_increase", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.max_memory_increase, 0, 100); }},
              {"min_memory_increase_mb", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.min_memory_increase_mb, 0, 1 << 20); }},
              {"max_error_class_spike", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.max_error_class_spike, 0, 1); }},
              {"max_shadow_mismatch", [&](auto& fn, auto& fk) { r.read_double(fn, fk, ro.max_shadow_mismatch, 0, 1); }},
              {"shadow_ignore_fields", [&](auto& fn, auto& fk) {
                 r.read_list(fn, fk, ro.shadow_ignore_fields);
                 for (const auto& f : ro.shadow_ignore_fields)
                   if (f.empty() || f[0] != '/') r.error(fn, fk, "'" + f + "' is not a JSON pointer (starts with '/')");
               }},
              {"shadow_ignore_array_order", [&](auto& fn, auto& fk) { r.read(fn, fk, ro.shadow_ignore_array_order); }},
              {"steps", [&](auto& fn, auto& fk) {
                 if (!fn.IsSequence()) return r.error(fn, fk, "expected a list of percents");
                 ro.steps.clear();
                 for (std::size_t i = 0; i < fn.size(); ++i) {
                   double v = -1;
                   r.read_double(fn[i], fk + "[" + std::to_string(i) + "]", v, 0, 100);
                   if (v < 0) continue;
                   if (!ro.steps.empty() && v <= ro.steps.back())
                     r.error(fn[i], fk + "[" + std::to_string(i) + "]", "steps must increase");
                   ro.steps.push_back(v);
                 }
               }},
              {"step_dwell_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, ro.step_dwell); }},
              {"resume_paused_after_crash", [&](auto& fn, auto& fk) {
                 bool ignored = false;
                 r.read(fn, fk, ignored);
                 spdlog::warn("{}: ignored: after a crash a rollout always waits at 0 % for `pipectl resume`", fk);
               }}});
}

void read_shared_limits(Reader& r, const YAML::Node& n, const std::string& k, SharedLimitsConfig& sl) {
  r.read_map(n, k,
             {{"redis", [&](auto& fn, auto& fk) {
                 r.read(fn, fk, sl.redis);
                 if (sl.redis.empty()) return;
                 if (const std::string e = parse_redis_url(sl.redis, sl); !e.empty()) r.error(fn, fk, e);
               }},
              {"expected_replicas", [&](auto& fn, auto& fk) { r.read_int(fn, fk, sl.expected_replicas, 1, 10000); }},
              {"timeout_ms", [&](auto& fn, auto& fk) { r.read_millis(fn, fk, sl.timeout, 1); }}});
}

void read_root(Reader& r, const YAML::Node& root, Config& c) {
  YAML::Node admin_node, endpoints_node, metrics_listen_node;
  bool admin_socket_set = false, database_set = false;
  r.read_map(root, "",
             {{"server", [&](auto& n, auto& k) { read_server(r, n, k, c.server); }},
              {"admin", [&](auto& n, auto& k) {
                 admin_node = n;
                 read_admin(r, n, k, c.admin, admin_socket_set);
               }},
              {"worker_threads", [&](auto& n, auto& k) { r.read_int(n, k, c.worker_threads, 1, 1024); }},
              {"plugin_directory", [&](auto& n, auto& k) { r.read(n, k, c.plugin_directory); }},
              {"state_directory", [&](auto& n, auto& k) { r.read(n, k, c.state_directory); }},
              {"runner_path", [&](auto& n, auto& k) { r.read(n, k, c.runner_path); }},
              {"providers", [&](auto& n, auto& k) { read_providers(r, n, k, c.providers); }},
              {"metrics", [&](auto& n, auto& k) { read_metrics(r, n, k, c.metrics, database_set, metrics_listen_node); }},
              {"replica", [&](auto& n, auto& k) { read_replica(r, n, k, c.replica); }},
              {"rollout", [&](auto& n, auto& k) { read_rollout(r, n, k, c.rollout); }},
              {"shared_limits", [&](auto& n, auto& k) { read_shared_limits(r, n, k, c.shared_limits); }},
              {"pipelines", [&](auto& n, auto& k) {
                 r.read_named(n, k, "pipelines", [&](const std::string& name, const YAML::Node& pn, const std::string& pk) {
                   PipelineConfig p;
                   p.name = name;
                   read_pipeline(r, pn, pk, p);
                   check_graph(r, pn, pk, p);
                   c.pipelines.push_back(std::move(p));
                 });
               }},
              {"endpoints", [&](auto& n, auto& k) {
                 endpoints_node = n;
                 if (!n.IsSequence()) return r.error(n, k, "expected a list of endpoints");
                 for (std::size_t i = 0; i < n.size(); ++i) {
                   EndpointConfig e;
                   read_endpoint(r, n[i], k + "[" + std::to_string(i) + "]", e);
                   c.endpoints.push_back(std::move(e));
                 }
               }}});

  if (!admin_socket_set) c.admin.socket_path = c.state_directory + "/admin.sock";
  if (!database_set) c.metrics.database = c.state_directory + "/pipelined.db";
  if (c.admin.tcp_port != 0 || !c.admin.tcp_address.empty()) {
    if (c.admin.token.empty()) r.error(admin_node, "admin.tcp", "the TCP admin listener needs admin.token");
    if (!is_loopback(c.admin.tcp_address)) r.error(admin_node, "admin.tcp", "the TCP admin listener must be on a loopback address");
  }
  const auto& ml = c.metrics;
  if (!ml.listen_address.empty() && ml.listen_port != 0 &&
      ((ml.listen_address == c.server.listen_address && ml.listen_port == c.server.listen_port) ||
       (ml.listen_address == c.admin.tcp_address && ml.listen_port == c.admin.tcp_port)))
    r.error(metrics_listen_node, "metrics.listen", "the metrics listener needs its own port, not server.listen's or admin.tcp's");
  std::set<std::pair<std::string, std::string>> routes;
  for (std::size_t i = 0; i < c.endpoints.size(); ++i) {
    const auto& e = c.endpoints[i];
    const std::string key = "endpoints[" + std::to_string(i) + "]";
    const YAML::Node node = endpoints_node[i];
    const PipelineConfig* p = c.pipeline(e.pipeline);
    if (!e.pipeline.empty() && p == nullptr) r.error(node["pipeline"], key + ".pipeline", "unknown pipeline '" + e.pipeline + "'");
    if (!e.path.empty() && !routes.insert({e.method, e.path}).second)
      r.error(node["path"], key + ".path", "duplicate endpoint " + e.method + " " + e.path);
    check_template(r, node["response"], key + ".response", e.response, p);
  }
}

LoadResult load(const std::string& yaml, const std::string& source) {
  LoadResult result;
  Reader r(source);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    result.errors.push_back({source, e.mark.line + 1, e.mark.column + 1, "", "malformed YAML: " + e.msg});
    return result;
  }
  if (!root.IsMap()) {
    result.errors.push_back({source, 1, 1, "", "expected a YAML map at the top level"});
    return result;
  }
  auto config = std::make_shared<Config>();
  config->source_path = source;
  try {
    read_root(r, root, *config);
  } catch (const YAML::Exception& e) {
    r.errors.push_back({source, e.mark.line + 1, e.mark.column + 1, "", e.msg});
  }
  result.errors = std::move(r.errors);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

}  // namespace

LoadResult load_string(const std::string& yaml, const std::string& source_name) { return load(yaml, source_name); }

LoadResult load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.errors.push_back({path, 0, 0, "", "cannot read the file: " + std::string(std::strerror(errno))});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load(text.str(), path);
}

}  // namespace pipelined::config

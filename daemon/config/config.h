// Daemon configuration: parsed once from YAML, validated, then immutable and shared as
// std::shared_ptr<const Config>. A reload parses a new one; the running one stays if it fails.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipelined::config {

using Millis = std::chrono::milliseconds;

struct ServerConfig {
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 8080;
  int io_threads = 2;
  std::size_t body_limit_bytes = 20 * 1024 * 1024;
  std::size_t header_limit_bytes = 16 * 1024;
  Millis read_timeout{30000};   // a request's header and body must arrive within this
  Millis idle_timeout{60000};   // keep-alive connection with no request is closed after this
  Millis request_timeout{300000};  // pipeline deadline per request
  Millis drain_timeout{30000};  // SIGTERM: in-flight requests get this long to finish
  // One JSON line per finished frontend request, for log shippers: "" off, "stderr", or a file
  // path (appended). Read at start; a reload does not move it.
  std::string request_log;
  // Server-sent events (docs/server-sent-events.md): a comment line is sent on an event stream
  // that has been quiet this long, so proxies and browsers keep it open.
  Millis sse_keepalive{15000};
  // GET /demo/ on the frontend listener: a page that streams a menu translation (off in production).
  bool demo = false;
  // A request whose heap account passes this fails with class "memory" (HTTP 507); 0: no cap.
  std::int64_t max_request_memory_mb = 2048;
};

struct AdminConfig {
  std::string socket_path;  // Unix socket, mode 0600; empty disables
  std::string tcp_address;  // optional loopback TCP ("127.0.0.1"), empty disables
  std::uint16_t tcp_port = 0;
  std::string token;  // bearer token, required when TCP is enabled
};

struct ProviderConfig {
  std::string name;
  std::string base_url;
  std::string api_key;
  std::string auth_header = "Authorization";  // "Authorization" sends "Bearer <key>"; others send the key
  Millis timeout{60000};
  int max_in_flight = 8;
  double requests_per_minute = 0;  // 0 = unlimited
  int max_retries = 3;
  Millis backoff_base{200};
  Millis backoff_max{10000};
  // Which of the provider's waiting calls starts next when a slot or token frees up. Request: the
  // call of the oldest user request (ties: the call sent first), so the older of concurrent requests
  // finish sooner at the same throughput; Arrival: the call sent first (FIFO).
  enum class QueueOrder { Request, Arrival };
  QueueOrder queue_order = QueueOrder::Request;
};

struct VariantConfig {
  std::string name;    // "serial", "parallel"
  std::string plugin;  // plugin file stem in plugins.directory: "<plugin>.so"
  nlohmann::json config = nlohmann::json::object();  // handed to the plugin's create()
  // Ordering-only dependencies that hold when this variant runs: a serial variant can wait for a
  // stage that its parallel sibling overlaps with (medicine: OCR after the drug query).
  std::vector<std::string> after;

  // `isolation: process` runs the variant's plugin in a supervised runner process (daemon/isolation):
  // a crash there fails only the variant's own runs. in_process (the default) loads it into the daemon.
  enum class Isolation { InProcess, Process };
  Isolation isolation = Isolation::InProcess;
  std::int64_t memory_limit_mb = 4096;  // process: the runner's address-space limit (RLIMIT_AS); 0 = none
  Millis hang_grace{2000};              // process: a run this far past its deadline has the runner killed
  int runner_threads = 8;               // process: the runner's worker pool
};

enum class OnFailure { Fail, Partial };

struct StageConfig {
  std::string name;
  std::vector<std::string> needs;  // stages whose outputs this one reads
  bool stream_input = false;       // `input: stream`: reads items of its single need as they are emitted
  std::vector<VariantConfig> variants;
  std::string stable;  // name of the stable variant
  // The variant a rollout that names no stages switches this stage to. Empty in the file: the
  // stage's only non-stable variant, if it has exactly one (config.cpp fills it in).
  std::string candidate;
  OnFailure on_failure = OnFailure::Fail;
  bool fallback_to_stable = true;  // a failing non-stable variant reruns on stable
  std::optional<Millis> timeout;   // per stage run; candidate past it falls back
  int line = 0;                    // YAML line, for error messages

  const VariantConfig* variant(const std::string& variant_name) const;
};

struct PipelineConfig {
  std::string name;
  std::vector<StageConfig> stages;  // in declaration order
  // Whole-request fallback: when a candidate run fails, rerun the whole pipeline on stable.
  bool fallback_whole_request = false;

  const StageConfig* stage(const std::string& stage_name) const;
};

// How an HTTP request becomes pipeline input.
enum class RequestFormat { Json, Multipart };

struct EndpointConfig {
  std::string method = "POST";
  std::string path;
  std::string pipeline;
  RequestFormat format = RequestFormat::Json;
  // Multipart: file parts become attachments named after their field; other fields become JSON
  // members. `files_field` names the field whose files are collected (repeated fields allowed).
  std::string files_field = "file";
  // Response body template: JSON in which string values "$stages.<stage>[/json/pointer]" and
  // "$meta.<request_id|elapsed_ms|elapsed_s|variants>" are replaced by values.
  nlohmann::json response = nlohmann::json::object();
  // A request with "Accept: text/event-stream" gets server-sent events (progress, then the body as
  // a `result` event); false: it gets the plain response like any other request.
  bool streaming = true;
  // Requests running at once on this endpoint; one more is answered 503 with Retry-After without
  // running the pipeline. 0: unlimited.
  int max_concurrent = 64;
};

struct RolloutConfig {
  // Where the sticky key comes from: "header:X-User-Id", "cookie:uid", "json:user_id"; empty = per request.
  std::string sticky_key;
  bool allow_force_header = false;  // X-Pipelined-Arm: stable|candidate honoured only when true
  Millis guardrail_interval{10000};
  int min_samples_per_arm = 30;       // sequential tests judge once each arm has this many
  double alpha = 0.05;                // total error budget of the guardrails, split across them
  double srm_alpha = 0.001;           // sample-ratio mismatch test
  double hard_min_success_rate = 0.80;  // fast path: candidate success below this ...
  int hard_min_requests = 20;           // ... after this many candidate requests rolls back at once
  int max_crashed_requests = 3;         // fast path: this many candidate requests failed by a runner crash roll back
  double min_success_rate = 0.95;     // the candidate's own success: no attempt failed
  double min_time_saved = 0.10;         // candidate median latency at least 10 % below stable
  double max_memory_increase = 0.20;    // candidate request peak heap at most 20 % above stable ...
  double min_memory_increase_mb = 4;    // ... unless at most this much more per request
  double max_error_class_spike = 0.05;  // a new error class above this share of candidate requests
  double max_shadow_mismatch = 0.01;
  std::vector<std::string> shadow_ignore_fields;  // JSON pointers ignored when comparing outputs
  bool shadow_ignore_array_order = false;
  std::vector<double> steps;  // e.g. 5, 25, 50, 100; empty = manual
  Millis step_dwell{3600000};
};

struct MetricsConfig {
  // A SQLite file, or a postgresql:// URL shared by replicas. Default: <state_directory>/pipelined.db
  std::string database = "var/pipelined.db";
  int retention_days = 30;
  std::size_t queue_capacity = 100000;  // rows beyond this are dropped and counted
  Millis flush_interval{200};
  // Prometheus scrape listener (GET /metrics, no auth), "host:port"; empty address: none.
  std::string listen_address;
  std::uint16_t listen_port = 0;
};

// Replicas sharing one PostgreSQL metrics database (docs/scaling.md).
struct ReplicaConfig {
  std::string id;                  // unique per replica; empty: "<host name>:<server.listen port>"
  Millis poll{1000};               // rollout state re-read this often besides notifications; heartbeat
  Millis timeout{5000};            // a replica not seen for this long is not waited for, shown as lost
};

// Provider limits shared by the replicas that call one provider account (docs/configuration.md,
// "shared_limits"): each call asks Redis first (daemon/outbound/shared_limiter.h). Read at start; a
// reload does not change it.
struct SharedLimitsConfig {
  std::string redis;  // "redis://[:password@]host[:port][/db]"; empty: limits are per daemon
  // Parsed from `redis` by the config reader.
  std::string host;
  int port = 6379;
  int db = 0;
  std::string password;
  int expected_replicas = 1;  // Redis unreachable: each replica uses ceil(limit / expected_replicas)
  Millis timeout{50};         // per Redis call (and connect)

  bool enabled() const { return !redis.empty(); }
};

// Splits "redis://[:password@]host[:port][/db]" into `out`; returns an error message, or "" when it parses.
std::string parse_redis_url(const std::string& url, SharedLimitsConfig& out);

struct Config {
  std::string source_path;  // file it was read from
  ServerConfig server;
  AdminConfig admin;
  int worker_threads = 16;
  std::string plugin_directory = "plugins";
  std::string state_directory = "var";  // plugin copies, default admin socket
  std::string runner_path;              // pipelined-runner for `isolation: process`; empty: beside the daemon executable
  std::map<std::string, ProviderConfig> providers;
  std::vector<PipelineConfig> pipelines;
  std::vector<EndpointConfig> endpoints;
  RolloutConfig rollout;
  MetricsConfig metrics;
  ReplicaConfig replica;
  SharedLimitsConfig shared_limits;

  const PipelineConfig* pipeline(const std::string& name) const;
};

// A config error a person can act on: "configs/default.yaml:12:5: pipelines.menu.stages.ocr: unknown key 'varaints'".
struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based
  std::string key; // dotted path of the offending key
  std::string message;
  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<ConfigError> errors;
};

// Reads and validates a YAML file. `${ENV_VAR}` in scalar values is replaced from the environment
// (an unset variable is an error unless written `${ENV_VAR:-default}`). Relative paths in the file
// are resolved against the current directory.
LoadResult load_file(const std::string& path);
LoadResult load_string(const std::string& yaml, const std::string& source_name = "<string>");

}  // namespace pipelined::config

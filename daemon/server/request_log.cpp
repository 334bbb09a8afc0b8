#include "daemon/server/request_log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>

namespace pipelined::server {

RequestLog::RequestLog(const std::string& target) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  try {
    if (target == "stderr") sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    else sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(target);
  } catch (const spdlog::spdlog_ex& e) {
    throw std::runtime_error("server.request_log " + target + ": " + e.what());
  }
  logger_ = std::make_shared<spdlog::logger>("requests", sink);
  logger_->set_pattern("%v");
  logger_->flush_on(spdlog::level::info);
}

void RequestLog::write(const rollout::RequestRecord& r, const std::string& endpoint) const {
  nlohmann::json variants = nlohmann::json::object();
  for (const auto& s : r.stages) variants[s.stage] = s.variant;
  const nlohmann::json line = {{"time_ms", r.time_ms},         {"request_id", r.request_id},       {"pipeline", r.pipeline},
                               {"endpoint", endpoint},         {"arm", rollout::to_string(r.arm)}, {"rollout_id", r.rollout_id},
                               {"variants", variants},         {"status", r.http_status},          {"outcome", r.outcome},
                               {"latency_ms", r.latency_us / 1000.0}, {"fell_back", r.fell_back},  {"fallback_cause", r.fallback_cause},
                               {"own_failure", r.own_failure}, {"error_class", r.error_class}};
  logger_->info(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void RequestLog::write_refused(const std::string& request_id, const std::string& pipeline, const std::string& endpoint, int status,
                               const std::string& outcome) const {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  const nlohmann::json line = {{"time_ms", now.count()}, {"request_id", request_id}, {"pipeline", pipeline}, {"endpoint", endpoint},
                               {"arm", "none"},          {"status", status},         {"outcome", outcome}};
  logger_->info(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace pipelined::server

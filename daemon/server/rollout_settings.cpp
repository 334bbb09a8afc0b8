#include "daemon/server/rollout_settings.h"

#include <unistd.h>

#include <filesystem>

namespace pipelined::server {

rollout::RolloutSettings rollout_settings(const config::Config& c) {
  rollout::RolloutSettings s;
  for (const auto& p : c.pipelines) {
    rollout::PipelineCatalog pc{p.name, {}, p.fallback_whole_request};
    for (const auto& st : p.stages) {
      rollout::StageCatalog sc{st.name, st.stable, st.candidate, {}};
      for (const auto& v : st.variants) sc.variants.push_back(v.name);
      pc.stages.push_back(std::move(sc));
    }
    s.pipelines.push_back(std::move(pc));
  }
  const auto& r = c.rollout;
  s.criteria.min_success_rate = r.min_success_rate;
  s.criteria.min_time_saved = r.min_time_saved;
  s.criteria.max_memory_increase = r.max_memory_increase;
  s.criteria.min_memory_increase_bytes = r.min_memory_increase_mb * (1 << 20);
  s.criteria.max_error_class_spike = r.max_error_class_spike;
  s.criteria.max_shadow_mismatch = r.max_shadow_mismatch;
  s.criteria.alpha = r.alpha;
  s.criteria.srm_alpha = r.srm_alpha;
  s.criteria.hard_min_success_rate = r.hard_min_success_rate;
  s.criteria.hard_min_requests = r.hard_min_requests;
  s.criteria.max_crashed_requests = r.max_crashed_requests;
  s.criteria.min_samples_per_arm = r.min_samples_per_arm;
  s.allow_force_header = r.allow_force_header;
  s.guardrail_interval = r.guardrail_interval;
  s.steps = r.steps;
  s.step_dwell = r.step_dwell;
  s.shadow_rules = {r.shadow_ignore_fields, r.shadow_ignore_array_order};
  s.database = c.metrics.database;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  s.replica_host = host;
  // Default: host and port. It must stay the same across restarts, because the crash-loop guard
  // reads this replica's previous run. An ephemeral port (0) differs on every start, so the state
  // directory, which no two daemons share, names the instance then.
  const std::string instance = c.server.listen_port != 0 ? std::to_string(c.server.listen_port)
                                                         : std::filesystem::absolute(c.state_directory).lexically_normal().string();
  s.replica_id = c.replica.id.empty() ? s.replica_host + ":" + instance : c.replica.id;
  s.replica_poll = c.replica.poll;
  s.replica_timeout = c.replica.timeout;
  s.retention_days = c.metrics.retention_days;
  s.queue_capacity = c.metrics.queue_capacity;
  s.flush_interval = c.metrics.flush_interval;
  return s;
}

}  // namespace pipelined::server

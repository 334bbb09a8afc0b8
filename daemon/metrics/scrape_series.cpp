#include "daemon/metrics/metrics.h"
#include <algorithm>
#include <tuple>

#include "daemon/outbound/outbound.h"
#include "rollout/rollout.h"

namespace pipelined::metrics {

void collect_rollout(const rollout::Status& status, const std::vector<std::string>& pipelines, Scrape& out) {
  using rollout::RolloutStatus;
  std::vector<std::string> names = pipelines;
  for (const auto& [name, p] : status.pipelines)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  auto rollout_of = [&status](const std::string& name) -> const rollout::Rollout* {
    auto it = status.pipelines.find(name);
    return it != status.pipelines.end() && it->second.rollout ? &*it->second.rollout : nullptr;
  };

  out.family("pipelined_rollout_candidate_share", "gauge", "Share of the pipeline's traffic on the candidate arm, 0 to 1.");
  for (const auto& name : names) {
    const auto* r = rollout_of(name);
    out.sample("pipelined_rollout_candidate_share", {{"pipeline", name}}, r && r->active() ? r->percent_bp / 10000.0 : 0.0);
  }

  // A state set: 1 for the latest rollout's status (none: the pipeline never had one), 0 for the others.
  out.family("pipelined_rollout_status", "gauge", "1 for the status of the pipeline's latest rollout, 0 for the other statuses.");
  const RolloutStatus all[] = {RolloutStatus::Live, RolloutStatus::Paused, RolloutStatus::RolledBack, RolloutStatus::Promoted,
                               RolloutStatus::Completed};
  for (const auto& name : names) {
    const auto* r = rollout_of(name);
    out.sample("pipelined_rollout_status", {{"pipeline", name}, {"status", "none"}}, r ? 0 : 1);
    for (auto s : all) out.sample("pipelined_rollout_status", {{"pipeline", name}, {"status", to_string(s)}}, r && r->status == s ? 1 : 0);
  }

  const auto& m = status.metrics;
  out.family("pipelined_metric_rows_total", "counter", "Request metric rows written to the metrics database, or lost and why.");
  const std::pair<const char*, std::uint64_t> lost[] = {{"queue_full", m.lost_queue_full}, {"locked", m.lost_locked},
                                                        {"disk_full", m.lost_disk_full}, {"unavailable", m.lost_unavailable}};
  out.sample("pipelined_metric_rows_total", {{"state", "written"}, {"cause", "none"}}, static_cast<double>(m.written));
  for (const auto& [cause, n] : lost) out.sample("pipelined_metric_rows_total", {{"state", "lost"}, {"cause", cause}}, static_cast<double>(n));
  // Queued rows go up and down: a gauge, not a state of the counter (rate() needs counters that only grow).
  out.family("pipelined_metric_rows_queued", "gauge", "Metric rows waiting for the database writer.");
  out.sample("pipelined_metric_rows_queued", {}, static_cast<double>(m.queued));
  out.family("pipelined_metrics_database_up", "gauge", "0 while the metrics database server is unreachable and rows wait in the queue.");
  out.sample("pipelined_metrics_database_up", {}, m.waiting ? 0 : 1);
  // Replicas on a shared database: exactly one should say 1 (alert on sum() != 1).
  out.family("pipelined_replica_deciding", "gauge", "1 when this replica holds the lease: it judges guardrails and takes steps.");
  out.sample("pipelined_replica_deciding", {}, status.deciding ? 1 : 0);
}

void collect_process(std::size_t requests_in_flight, std::int64_t resident_bytes, std::uint64_t plugin_generation, Scrape& out) {
  out.family("pipelined_requests_in_flight", "gauge", "Frontend requests running a pipeline now.");
  out.sample("pipelined_requests_in_flight", {}, static_cast<double>(requests_in_flight));
  out.family("pipelined_process_resident_memory_bytes", "gauge", "Resident set size of the daemon process.");
  out.sample("pipelined_process_resident_memory_bytes", {}, static_cast<double>(resident_bytes));
  out.family("pipelined_plugin_generation", "gauge", "Generation of the plugin set serving new requests; grows at each reload.");
  out.sample("pipelined_plugin_generation", {}, static_cast<double>(plugin_generation));
}

void collect_runners(const std::vector<plugin_host::PluginInfo>& plugins, Scrape& out) {
  using Field = double (*)(const isolation::RunnerStats&);
  const std::tuple<const char*, const char*, const char*, Field> series[] = {
      {"pipelined_runner_up", "gauge", "1 while the runner process of an isolated variant is up.",
       [](const isolation::RunnerStats& r) { return r.up ? 1.0 : 0.0; }},
      {"pipelined_runner_resident_memory_bytes", "gauge", "Resident set size of an isolated variant's runner process.",
       [](const isolation::RunnerStats& r) { return static_cast<double>(r.rss_bytes); }},
      {"pipelined_runner_crashes_total", "counter", "Runner processes of an isolated variant that died or were killed as hung.",
       [](const isolation::RunnerStats& r) { return static_cast<double>(r.crashes); }},
      {"pipelined_runner_restarts_total", "counter", "Runner processes of an isolated variant started after a crash.",
       [](const isolation::RunnerStats& r) { return static_cast<double>(r.restarts); }}};
  for (const auto& [name, type, help, field] : series) {
    out.family(name, type, help);
    for (const auto& p : plugins)
      if (p.isolated) out.sample(name, {{"pipeline", p.pipeline}, {"stage", p.stage}, {"variant", p.variant}}, field(p.runner));
  }
}

void collect_outbound(const std::map<std::string, outbound::ProviderStats>& stats, Scrape& out) {
  using outbound::ProviderStats;
  const std::pair<const char*, std::uint64_t ProviderStats::*> counters[] = {{"requests", &ProviderStats::requests},
                                                                              {"retries", &ProviderStats::retries},
                                                                              {"rate_limited", &ProviderStats::rate_limited},
                                                                              {"failures", &ProviderStats::failures}};
  for (const auto& [what, field] : counters) {
    const std::string name = std::string("pipelined_outbound_") + what + "_total";
    out.family(name, "counter", std::string("Outbound provider calls: ") + what + ", by provider.");
    for (const auto& [provider, st] : stats) out.sample(name, {{"provider", provider}}, static_cast<double>(st.*field));
  }
  out.family("pipelined_outbound_in_flight", "gauge", "Outbound provider calls in flight, by provider.");
  for (const auto& [provider, st] : stats) out.sample("pipelined_outbound_in_flight", {{"provider", provider}}, st.in_flight);
  // Only with shared_limits configured: 0 means Redis is unreachable and the replica keeps a local share.
  bool shared = false;
  for (const auto& [provider, st] : stats) shared = shared || st.shared_limit != "off";
  if (!shared) return;
  out.family("pipelined_provider_shared_limit_up", "gauge",
             "1 while the provider's limits are shared across replicas in Redis, 0 while this replica keeps limit / expected_replicas "
             "locally (Redis unreachable).");
  for (const auto& [provider, st] : stats)
    if (st.shared_limit != "off")
      out.sample("pipelined_provider_shared_limit_up", {{"provider", provider}}, st.shared_limit == "redis" ? 1 : 0);
}

}  // namespace pipelined::metrics

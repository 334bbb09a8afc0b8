// The daemon's Prometheus metrics: a small registry of counters and histograms with bounded label
// sets, scrape-time collectors for values other components already keep (rollout state, memory,
// plugin generation), and rendering in the Prometheus text exposition format 0.0.4.
//
// Written by hand: Debian 12 has no prometheus-cpp package (no libprometheus-cpp-dev), and the
// project installs only Debian packages. The hot path is a series lookup under a shared lock (the
// exclusive lock is taken only the first time a label set is seen) and relaxed atomic adds.
// Label values must come from bounded sets: config names (pipelines, endpoints, stages, variants)
// and fixed words (arm, outcome).
#pragma once

#include "daemon/plugin_host/plugin_host.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipelined::rollout {
struct Status;
}
namespace pipelined::outbound {
struct ProviderStats;
}

namespace pipelined::metrics {

using Labels = std::vector<std::string>;  // label values, in the family's label-name order

// What a collector writes at scrape time: one family() per metric name, then its samples.
class Scrape {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels, double value);
  std::string text;
};

class Registry {
 public:
  struct Family;
  Registry();
  ~Registry();

  // Declares a family; call once per name before serving. The returned reference stays valid.
  Family& counter(std::string name, std::string help, std::vector<std::string> label_names);
  Family& histogram(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> buckets);

  static void add(Family& counter, const Labels& values, double by = 1);
  static void observe(Family& histogram, const Labels& values, double value);

  // Runs at every render(), after the registry's own families, on the scraping thread.
  void add_collector(std::function<void(Scrape&)> collect);
  std::string render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The request path's series (pipelined_requests_total, pipelined_request_duration_seconds,
// pipelined_stage_duration_seconds, pipelined_fallbacks_total); names in docs/operations.md.
class RequestSeries {
 public:
  explicit RequestSeries(Registry& registry);
  // arm: stable | candidate | none (refused before an arm was chosen); outcome: ok | partial | error | rejected
  void request(const std::string& pipeline, const std::string& endpoint, const std::string& arm, const std::string& outcome,
               std::chrono::microseconds elapsed);
  void stage(const std::string& pipeline, const std::string& stage, const std::string& variant, std::chrono::microseconds duration);
  void fallback(const std::string& pipeline, const std::string& stage);  // stage "(whole_request)": a whole-request rerun

 private:
  Registry::Family &requests_, &request_duration_, &stage_duration_, &fallbacks_;
};

// Scrape-time series from state other components keep.
// pipelined_rollout_candidate_share, pipelined_rollout_status, pipelined_metric_rows_total and
// pipelined_metric_rows_queued from one RolloutController::status(); `pipelines` are the configured
// ones, so a pipeline without a rollout still has its series.
void collect_rollout(const rollout::Status& status, const std::vector<std::string>& pipelines, Scrape& out);

// pipelined_requests_in_flight, pipelined_process_resident_memory_bytes, pipelined_plugin_generation.
void collect_process(std::size_t requests_in_flight, std::int64_t resident_bytes, std::uint64_t plugin_generation, Scrape& out);

// pipelined_runner_{up,resident_memory_bytes,crashes_total,restarts_total}: the runner process of
// every variant with `isolation: process`, by pipeline, stage and variant.
void collect_runners(const std::vector<plugin_host::PluginInfo>& plugins, Scrape& out);

// pipelined_outbound_{requests,retries,rate_limited,failures}_total and pipelined_outbound_in_flight, by provider.
void collect_outbound(const std::map<std::string, outbound::ProviderStats>& stats, Scrape& out);

}  // namespace pipelined::metrics

// The registry's exposition text: counters, histograms (cumulative buckets, +Inf equal to _count),
// escaping, scrape-time collectors, and the rollout series from a Status.
#include <gtest/gtest.h>

#include <thread>

#include "daemon/metrics/metrics.h"
#include "daemon/outbound/outbound.h"
#include "rollout/rollout.h"

namespace pipelined::metrics {
namespace {

bool has_line(const std::string& text, const std::string& line) { return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0; }

void expect_lines(const std::string& text, std::initializer_list<std::string> lines) {
  for (const auto& line : lines) EXPECT_TRUE(has_line(text, line)) << "missing: " << line << "\nin:\n" << text;
}

TEST(Registry, RendersCountersWithHelpTypeAndLabels) {
  Registry r;
  auto& c = r.counter("x_total", "Things.", {"a", "b"});
  Registry::add(c, {"1", "2"});
  Registry::add(c, {"1", "2"}, 2);
  Registry::add(c, {"q\"\\\n", "z"});
  const auto text = r.render();
  expect_lines(text, {"# HELP x_total Things.",
                      "# TYPE x_total counter",
                      "x_total{a=\"1\",b=\"2\"} 3",
                      "x_total{a=\"q\\\"\\\\\\n\",b=\"z\"} 1"});
}

TEST(Registry, HistogramBucketsAreCumulative) {
  Registry r;
  auto& h = r.histogram("d_seconds", "Durations.", {"p"}, {0.1, 1});
  for (double v : {0.05, 0.1, 0.5, 2.0}) Registry::observe(h, {"x"}, v);
  const auto text = r.render();
  expect_lines(text, {"# TYPE d_seconds histogram",
                      "d_seconds_bucket{p=\"x\",le=\"0.1\"} 2",
                      "d_seconds_bucket{p=\"x\",le=\"1\"} 3",
                      "d_seconds_bucket{p=\"x\",le=\"+Inf\"} 4",
                      "d_seconds_sum{p=\"x\"} 2.65",
                      "d_seconds_count{p=\"x\"} 4"});
}

TEST(Registry, ConcurrentAddsAreAllCounted) {
  Registry r;
  auto& c = r.counter("n_total", "N.", {"t"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&c, t] {
      for (int i = 0; i < 10000; ++i) Registry::add(c, {std::to_string(i % 3)});
      (void)t;
    });
  for (auto& t : threads) t.join();
  const auto text = r.render();
  expect_lines(text, {"n_total{t=\"0\"} 13336",
                      "n_total{t=\"2\"} 13332"});
}

TEST(Registry, CollectorsRunAtEachRender) {
  Registry r;
  int calls = 0;
  r.add_collector([&calls](Scrape& out) {
    out.family("g", "gauge", "G.");
    out.sample("g", {}, ++calls);});
  EXPECT_TRUE(has_line(r.render(), "g 1"));
  EXPECT_TRUE(has_line(r.render(), "g 2"));
}

TEST(RequestSeries, CountsRequestsStagesAndFallbacks) {
  Registry r;
  RequestSeries s(r);
  s.request("p", "/run", "stable", "ok", std::chrono::milliseconds(20));
  s.request("p", "/run", "none", "rejected", {});
  s.stage("p", "ocr", "fast", std::chrono::milliseconds(3));
  s.fallback("p", "ocr");
  const auto text = r.render();
  expect_lines(text, {R"(pipelined_requests_total{pipeline="p",endpoint="/run",arm="stable",outcome="ok"} 1)",
                      R"(pipelined_requests_total{pipeline="p",endpoint="/run",arm="none",outcome="rejected"} 1)",
                      R"(pipelined_request_duration_seconds_count{pipeline="p",arm="stable"} 1)"});
  EXPECT_EQ(text.find(R"(pipelined_request_duration_seconds_count{pipeline="p",arm="none"})"), std::string::npos) << text;
  expect_lines(text, {R"(pipelined_stage_duration_seconds_count{pipeline="p",stage="ocr",variant="fast"} 1)",
                      R"(pipelined_fallbacks_total{pipeline="p",stage="ocr"} 1)"});
}

TEST(RolloutSeries, ShareStatusAndRows) {
  rollout::Status status;
  rollout::Rollout live;
  live.pipeline = "menu";
  live.percent_bp = 2500;
  live.status = rollout::RolloutStatus::Live;
  status.pipelines["menu"].rollout = live;
  status.metrics.written = 7;
  status.metrics.lost_queue_full = 2;
  status.metrics.queued = 3;
  Scrape out;
  collect_rollout(status, {"menu", "medicine"}, out);
  const auto& t = out.text;
  expect_lines(t, {R"(pipelined_rollout_candidate_share{pipeline="menu"} 0.25)",
                   R"(pipelined_rollout_candidate_share{pipeline="medicine"} 0)",
                   R"(pipelined_rollout_status{pipeline="menu",status="live"} 1)",
                   R"(pipelined_rollout_status{pipeline="menu",status="none"} 0)",
                   R"(pipelined_rollout_status{pipeline="medicine",status="none"} 1)",
                   R"(pipelined_metric_rows_total{state="written",cause="none"} 7)",
                   R"(pipelined_metric_rows_total{state="lost",cause="queue_full"} 2)",
                   "pipelined_metric_rows_queued 3"});
}

TEST(ScrapeSeries, ProcessAndOutbound) {
  std::map<std::string, outbound::ProviderStats> stats;
  stats["ocr"].requests = 5;
  stats["ocr"].retries = 2;
  stats["ocr"].in_flight = 1;
  Scrape out;
  collect_process(3, 1 << 20, 4, out);
  collect_outbound(stats, out);
  expect_lines(out.text, {"pipelined_requests_in_flight 3", "pipelined_process_resident_memory_bytes 1048576",
                          "pipelined_plugin_generation 4", R"(pipelined_outbound_requests_total{provider="ocr"} 5)",
                          R"(pipelined_outbound_retries_total{provider="ocr"} 2)", R"(pipelined_outbound_failures_total{provider="ocr"} 0)",
                          R"(pipelined_outbound_in_flight{provider="ocr"} 1)", "# TYPE pipelined_outbound_rate_limited_total counter"});
}

TEST(ScrapeSeries, SharedLimitUpOnlyWhenConfigured) {
  std::map<std::string, outbound::ProviderStats> stats;
  stats["ocr"].requests = 1;
  Scrape off;
  collect_outbound(stats, off);
  EXPECT_EQ(off.text.find("pipelined_provider_shared_limit_up"), std::string::npos) << off.text;
  stats["ocr"].shared_limit = "redis";
  stats["llm"].shared_limit = "local share";
  Scrape on;
  collect_outbound(stats, on);
  expect_lines(on.text, {R"(pipelined_provider_shared_limit_up{provider="ocr"} 1)",
                         R"(pipelined_provider_shared_limit_up{provider="llm"} 0)", "# TYPE pipelined_provider_shared_limit_up gauge"});
}

}  // namespace
}  // namespace pipelined::metrics

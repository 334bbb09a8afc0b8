#include "daemon/metrics/metrics.h"

namespace pipelined::metrics {

namespace {

// Seconds: from a cached plugin answer to a slow OCR or model call.
const std::vector<double> kDurationBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

double seconds(std::chrono::microseconds d) { return static_cast<double>(d.count()) / 1e6; }

}  // namespace

RequestSeries::RequestSeries(Registry& r)
    : requests_(r.counter("pipelined_requests_total", "Frontend requests answered, by pipeline, endpoint path, arm and outcome.",
                          {"pipeline", "endpoint", "arm", "outcome"})),
      request_duration_(r.histogram("pipelined_request_duration_seconds",
                                    "Time from a request's input being read to its response, by pipeline and arm.",
                                    {"pipeline", "arm"}, kDurationBuckets)),
      stage_duration_(r.histogram("pipelined_stage_duration_seconds",
                                  "Time a stage ran, by pipeline, stage and the variant whose output was used.",
                                  {"pipeline", "stage", "variant"}, kDurationBuckets)),
      fallbacks_(r.counter("pipelined_fallbacks_total",
                           "Candidate failures that stable answered instead, by pipeline and stage ((whole_request): a rerun).",
                           {"pipeline", "stage"})) {}

void RequestSeries::request(const std::string& pipeline, const std::string& endpoint, const std::string& arm,
                            const std::string& outcome, std::chrono::microseconds elapsed) {
  Registry::add(requests_, {pipeline, endpoint, arm, outcome});
  if (outcome != "rejected" && outcome != "overloaded") Registry::observe(request_duration_, {pipeline, arm}, seconds(elapsed));
}

void RequestSeries::stage(const std::string& pipeline, const std::string& stage, const std::string& variant,
                          std::chrono::microseconds duration) {
  Registry::observe(stage_duration_, {pipeline, stage, variant}, seconds(duration));
}

void RequestSeries::fallback(const std::string& pipeline, const std::string& stage) { Registry::add(fallbacks_, {pipeline, stage}); }

}  // namespace pipelined::metrics

// Replays synthetic rollouts through rollout::judge(), the function the daemon's guardrail
// schedule calls, and prints how often it decides wrongly and how fast it decides rightly.
// Each replay draws requests 50/50 into two arms and judges after every 10 requests, as a daemon
// judging at every interval would at worst; a replay ends at its first rollback or at its horizon.
// Run: build/bench/decision_sim [replays=10000] [threads=2] [--check]
// --check exits 1 when a goal of the rollout-decision issue is missed (ctest runs 300 replays).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rollout/guardrails.h"
#include "bench/stats.h"

using namespace pipelined::rollout;

namespace {

using pipelined::bench::median;

struct ArmModel {
  double median_ms = 1000, sigma_log = 0.5;  // lognormal latency
  double failure = 0.01;                     // own failure probability
  // 64 MiB at the peak: +30 % is 19 MiB, above min_memory_increase_bytes (4 MiB), so the percentage decides.
  double memory_bytes = 64 << 20, memory_sigma_log = 0.3;
};

struct Scenario {
  std::string name;
  ArmModel stable, candidate;
  Criteria criteria;
  long horizon;  // candidate requests per replay
  bool rollback_is_right;
  long within;  // for the power figure: candidate requests within which a rollback counts
  double goal;  // wrong rollbacks at most this share, or right ones within `within` at least
};

struct Outcome {
  long rollbacks = 0, rollbacks_within = 0, replays = 0;
  std::vector<double> samples_to_rollback;  // candidate requests at the rollback
};

void replay(const Scenario& s, std::uint64_t seed, Outcome& out) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> z(0, 1);
  ArmOutcomes arms[2];
  const ArmModel* models[2] = {&s.stable, &s.candidate};
  ++out.replays;
  for (long i = 1; arms[1].requests < s.horizon; ++i) {
    const int a = u(rng) < 0.5 ? 1 : 0;
    const ArmModel& m = *models[a];
    const bool failed = u(rng) < m.failure;
    arms[a].add(m.median_ms * std::exp(m.sigma_log * z(rng)), m.memory_bytes * std::exp(m.memory_sigma_log * z(rng)), !failed, true, failed,
                failed ? "upstream" : "");
    if (i % 10) continue;
    const Verdict v = judge(s.criteria, arms[0], arms[1], {}, SplitCounts{arms[0].requests, arms[1].requests, 0.5});
    if (v.decision == Decision::RollBack) {
      ++out.rollbacks;
      if (arms[1].requests <= s.within) ++out.rollbacks_within;
      out.samples_to_rollback.push_back(arms[1].requests);
      return;
    }
  }
}

Outcome run(const Scenario& s, long replays, int threads) {
  std::vector<Outcome> parts(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (long r = t; r < replays; r += threads)
        replay(s, 0x5eed0000ULL + static_cast<std::uint64_t>(r), parts[static_cast<std::size_t>(t)]);
    });
  for (auto& th : pool) th.join();
  Outcome all;
  for (auto& p : parts) {
    all.rollbacks += p.rollbacks;
    all.rollbacks_within += p.rollbacks_within;
    all.replays += p.replays;
    all.samples_to_rollback.insert(all.samples_to_rollback.end(), p.samples_to_rollback.begin(), p.samples_to_rollback.end());
  }
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  // decision_sim [replays [threads [--check]]]: anything else (--help, a word) gets the usage line.
  auto positive = [](const char* text, long& out) {
    char* end = nullptr;
    out = std::strtol(text, &end, 10);
    return end != text && *end == '\0' && out > 0;
  };
  long replays = 10000, threads = 2;
  if ((argc > 1 && !positive(argv[1], replays)) || (argc > 2 && !positive(argv[2], threads)) ||
      (argc > 3 && std::string(argv[3]) != "--check") || argc > 4) {
    std::fprintf(stderr, "usage: %s [replays (10000) [threads (2) [--check]]]\n", argv[0]);
    return 2;
  }
  const bool check = argc > 3;
  Criteria defaults;  // the daemon's defaults
  Criteria no_speedup_required = defaults;
  no_speedup_required.min_time_saved = 0;  // A/A: the candidate is no worse, so any rollback is wrong

  ArmModel base;
  auto with = [&](auto change) {
    ArmModel m = base;
    change(m);
    return m;
  };
  const std::vector<Scenario> scenarios = {
      {"A/A, min_time_saved 0", base, base, no_speedup_required, 5000, false, 5000, 0.05},
      {"15 % faster, min_time_saved 10 %", base, with([](ArmModel& m) { m.median_ms *= 0.85; }), defaults, 5000, false, 5000, 0.05},
      {"+20 % latency, min_time_saved 0", base, with([](ArmModel& m) { m.median_ms *= 1.2; }), no_speedup_required, 2000, true, 260, 0},
      {"+20 % latency, min_time_saved 10 %", base, with([](ArmModel& m) { m.median_ms *= 1.2; }), defaults, 2000, true, 260, 0.80},
      {"failures 1 % -> 20 %", base, with([](ArmModel& m) {
         m.failure = 0.20;
         m.median_ms *= 0.7;
       }),
       defaults, 1000, true, 100, 0.90},
      {"failures 1 % -> 2 %", base, with([](ArmModel& m) {
         m.failure = 0.02;
         m.median_ms *= 0.7;
       }),
       defaults, 8000, true, 5000, 0.80},
      {"memory +30 %", base, with([](ArmModel& m) {
         m.memory_bytes *= 1.3;
         m.median_ms *= 0.7;
       }),
       defaults, 2000, true, 2000, 0},
  };
  std::printf("decision_sim: %ld replays per scenario, judged every 10 requests, alpha %.3f, lognormal latency sigma_log 0.5\n", replays,
              defaults.alpha);
  std::printf("%-36s %10s %12s %22s\n", "scenario", "rollbacks", "within", "median candidate n");
  int missed = 0;
  for (const auto& s : scenarios) {
    const long n = s.name == "failures 1 % -> 2 %" ? std::max(1L, replays / 5) : replays;  // the longest replays
    const Outcome o = run(s, n, static_cast<int>(threads));
    const double rate = static_cast<double>(o.rollbacks) / static_cast<double>(o.replays);
    const double within = static_cast<double>(o.rollbacks_within) / static_cast<double>(o.replays);
    char within_text[48];
    std::snprintf(within_text, sizeof within_text, "%.1f %% <= %ld", 100 * within, s.within);
    std::printf("%-36s %9.2f%% %12s %22.0f   %s (%ld replays)\n", s.name.c_str(), 100 * rate, within_text, median(o.samples_to_rollback),
                s.rollback_is_right ? "rollback is right" : "rollback is wrong", o.replays);
    const bool met = s.rollback_is_right ? within >= s.goal : rate <= s.goal;
    if (!met) {
      ++missed;
      std::printf("  goal missed: %s %.0f %%\n", s.rollback_is_right ? "at least" : "at most", 100 * s.goal);
    }
  }
  std::printf("command: %s %ld %ld%s\n", argv[0], replays, threads, check ? " --check" : "");
  return check && missed > 0 ? 1 : 0;
}

// shared_limiter_bench: the latency the Redis limiter (shared_limits, daemon/outbound/shared_limiter.h)
// adds to one provider request, against the same client with local limits only (docs/benchmarks.md,
// "Shared provider limits (Redis)"). provider-sim answers at once (--time-scale 0) and a redis-server
// of its own runs on loopback; limits are high enough never to hold a call back, so what differs is
// the EVALSHA before each call and the ZREM after it. Rounds alternate the two modes so drift in the
// machine's load falls on both.
#include "daemon/outbound/outbound.h"

#include <algorithm>
#include <cstdio>
#include <future>
#include <string>
#include <vector>

#include "tests/common/redis_server.h"
#include "tests/pipelines/harness.h"
#include "bench/stats.h"

using namespace pipelined;
using Clock = std::chrono::steady_clock;

namespace {

using pipelined::bench::percentile;

// `n` requests with `concurrency` outstanding at a time; the latency of each in microseconds.
std::vector<double> run(outbound::OutboundClient& client, int n, int concurrency) {
  std::vector<double> out(n);
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) {
        outbound::Request r;
        r.provider = "sim";
        r.method = "GET";
        r.path = "_sim/stats";
        std::promise<outbound::Response> done;
        auto f = done.get_future();
        const auto t0 = Clock::now();
        client.send(std::move(r), [&](outbound::Response res) { done.set_value(std::move(res)); });
        const auto res = f.get();
        out[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
        if (res.status != 200) std::fprintf(stderr, "request failed: %s\n", res.error.c_str());
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 10, per_round = 300, concurrency = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = std::stoi(argv[++i]);
    } else if (a == "--per-round" && i + 1 < argc) {
      per_round = std::stoi(argv[++i]);
    } else if (a == "--concurrency" && i + 1 < argc) {
      concurrency = std::stoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--rounds N] [--per-round N] [--concurrency N]\n", argv[0]);
      return 2;
    }
  }
  if (rounds < 1 || per_round < 1 || concurrency < 1) {
    std::fprintf(stderr, "usage: %s [--rounds N] [--per-round N] [--concurrency N]\n", argv[0]);
    return 2;
  }
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);

  pipelined::testing::RedisServer redis;
  harness::ProviderSim sim({"--time-scale", "0"});
  config::ProviderConfig p;
  p.name = "sim";
  p.base_url = sim.url();
  p.max_in_flight = 1000;
  p.requests_per_minute = 1e9;  // never holds a call back: the cost measured is the check itself
  const std::map<std::string, config::ProviderConfig> providers = {{"sim", p}};
  config::SharedLimitsConfig shared;
  shared.redis = redis.url();
  config::parse_redis_url(shared.redis, shared);
  shared.expected_replicas = 3;

  outbound::OutboundClient local(providers);
  outbound::OutboundClient with_redis(providers, shared);
  run(local, 200, concurrency);  // warm-up: connections to the sim and to Redis
  run(with_redis, 200, concurrency);
  std::vector<double> a, b;
  for (int r = 0; r < rounds; ++r) {
    auto x = run(local, per_round, concurrency);
    auto y = run(with_redis, per_round, concurrency);
    a.insert(a.end(), x.begin(), x.end());
    b.insert(b.end(), y.begin(), y.end());
  }
  const auto st = with_redis.stats()["sim"];
  if (st.shared_limit != "redis")
    std::fprintf(stderr, "warning: the Redis client ended in mode '%s' (%s)\n", st.shared_limit.c_str(), st.shared_limit_reason.c_str());

  std::printf("## Shared provider limits: latency per provider request, %d requests per mode, %d outstanding\n\n", rounds * per_round,
              concurrency);
  std::printf("`%s`\n\n", command.c_str());
  std::printf("| limits | p50 µs | p99 µs |\n|---|---|---|\n");
  std::printf("| local (shared_limits off) | %.0f | %.0f |\n", percentile(a, 0.5), percentile(a, 0.99));
  std::printf("| Redis (EVALSHA + ZREM, loopback) | %.0f | %.0f |\n", percentile(b, 0.5), percentile(b, 0.99));
  std::printf("| added | %+.0f | %+.0f |\n", percentile(b, 0.5) - percentile(a, 0.5), percentile(b, 0.99) - percentile(a, 0.99));
  return 0;
}

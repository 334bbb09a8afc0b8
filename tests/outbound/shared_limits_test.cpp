// Provider limits shared across replicas in Redis (daemon/outbound/shared_limiter.h): several
// OutboundClients (the replicas) share one real redis-server and call one provider-sim.
#include "daemon/outbound/outbound.h"
#include "daemon/outbound/shared_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <vector>

#include "tests/common/redis_server.h"
#include "tests/pipelines/harness.h"

namespace pipelined::outbound {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kEndpoint = "images/generations";

std::map<std::string, config::ProviderConfig> provider(const harness::ProviderSim& sim, int max_in_flight, double rpm) {
  config::ProviderConfig p;
  p.name = "openai";
  p.base_url = sim.url() + "/v1";
  p.api_key = "k";
  p.max_in_flight = max_in_flight;
  p.requests_per_minute = rpm;
  p.max_retries = 0;
  return {{"openai", p}};
}

config::SharedLimitsConfig shared(const std::string& url, int replicas = 3) {
  config::SharedLimitsConfig s;
  s.redis = url;
  EXPECT_EQ(config::parse_redis_url(url, s), "");
  s.expected_replicas = replicas;
  s.timeout = milliseconds(50);
  return s;
}

Request image_request(Clock::duration deadline = std::chrono::seconds(30)) {
  Request r;
  r.provider = "openai";
  r.path = kEndpoint;
  r.body = json{{"model", "dall-e-3"}, {"prompt", "tuna"}}.dump();
  r.deadline = Clock::now() + deadline;
  return r;
}

int served(harness::ProviderSim& sim) {
  const json s = sim.stats();
  return s["endpoints"].contains(kEndpoint) ? s["endpoints"][kEndpoint]["served"].get<int>() : 0;
}

// Waits up to `limit` for `pred`; returns whether it held.
template <typename Pred>
bool eventually(Pred pred, Clock::duration limit) {
  const auto until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

// Answers counted by outcome; callbacks may outlive the test's locals only until the clients go.
struct Outcomes {
  std::atomic<int> ok{0}, failed{0}, shutdown{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::function<void(Response)> callback() {
    return [this](Response r) {
      if (r.status == 200) {
        ok.fetch_add(1);
      } else if (r.error.find("shutting down") != std::string::npos) {
        shutdown.fetch_add(1);
      } else {
        failed.fetch_add(1);
        std::lock_guard lock(mu);
        errors.push_back(r.error_class + ": " + r.error);
      }
    };
  }
};

TEST(SharedLimits, RequestsPerMinuteHoldAcrossThreeClients) {
  // R = 120/min: a fresh bucket allows a burst of 120, then 2/s. Each client alone would send that
  // much; three clients without Redis would send three times as much.
  testing::RedisServer redis;
  harness::ProviderSim sim({"--time-scale", "0"});
  constexpr double kRpm = 120;
  Outcomes out;
  const auto t0 = Clock::now();
  {
    std::vector<std::unique_ptr<OutboundClient>> clients;
    for (int i = 0; i < 3; ++i) clients.push_back(std::make_unique<OutboundClient>(provider(sim, 64, kRpm), shared(redis.url())));
    for (auto& c : clients)
      for (int i = 0; i < 150; ++i) c->send(image_request(), out.callback());
    std::this_thread::sleep_for(std::chrono::seconds(3));
    const int sent = served(sim);
    const double elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double allowed = kRpm + kRpm * elapsed_s / 60.0;
    EXPECT_LE(sent, allowed * 1.02) << "elapsed " << elapsed_s << " s";
    EXPECT_GE(sent, kRpm) << "the clients did not use the shared allowance";
    std::uint64_t waits = 0;
    int clients_sending = 0;
    for (auto& c : clients) {
      const ProviderStats st = c->stats()["openai"];
      EXPECT_EQ(st.shared_limit, "redis") << st.shared_limit_reason;
      waits += st.shared_waits;
      clients_sending += st.requests > 0;
    }
    EXPECT_GT(waits, 0u);
    EXPECT_GE(clients_sending, 2);
  }
  EXPECT_EQ(out.failed.load(), 0) << (out.errors.empty() ? "" : out.errors.front());
}

TEST(SharedLimits, MaxInFlightHoldsAcrossClients) {
  // Each image takes 60 ms; 3 clients of 40 calls each, max_in_flight 4: the provider never sees
  // more than 4 at once (each client alone allows 4, so 12 without Redis).
  testing::RedisServer redis;
  harness::ProviderSim sim({"--time-scale", "0.01"});
  Outcomes out;
  {
    std::vector<std::unique_ptr<OutboundClient>> clients;
    for (int i = 0; i < 3; ++i) clients.push_back(std::make_unique<OutboundClient>(provider(sim, 4, 0), shared(redis.url())));
    for (auto& c : clients)
      for (int i = 0; i < 40; ++i) c->send(image_request(), out.callback());
    ASSERT_TRUE(eventually([&] { return out.ok.load() + out.failed.load() == 120; }, std::chrono::seconds(12)));
  }
  EXPECT_EQ(out.ok.load(), 120) << (out.errors.empty() ? "" : out.errors.front());
  const int peak = sim.stats()["endpoints"][kEndpoint]["peak_in_flight"].get<int>();
  EXPECT_LE(peak, 4);
  EXPECT_GE(peak, 3);  // the shared slots were used, not serialised
}

TEST(SharedLimits, RedisDownFallsBackToALocalShareThenComesBack) {
  // max_in_flight 6 over 3 expected replicas: 2 each while Redis is down. Two clients keep 8 calls
  // each outstanding; Redis is killed mid-run and restarted. No call may fail for it.
  testing::RedisServer redis;
  harness::ProviderSim sim({"--time-scale", "0.005"});  // 30 ms an image
  Outcomes out;
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<OutboundClient>> clients;
  for (int i = 0; i < 2; ++i) clients.push_back(std::make_unique<OutboundClient>(provider(sim, 6, 0), shared(redis.url(), 3)));
  // Keep 8 calls outstanding per client until `stop`.
  std::vector<std::thread> feeders;
  for (auto& c : clients) {
    feeders.emplace_back([&, client = c.get()] {
      std::atomic<int> outstanding{0};
      auto cb = out.callback();
      while (!stop.load()) {
        while (outstanding.load() < 8) {
          outstanding.fetch_add(1);
          client->send(image_request(), [&, cb](Response r) {
            cb(std::move(r));
            outstanding.fetch_sub(1);
          });
        }
        std::this_thread::sleep_for(milliseconds(2));
      }
      while (outstanding.load() > 0) std::this_thread::sleep_for(milliseconds(2));
    });
  }
  auto modes = [&](const std::string& mode) {
    for (auto& c : clients)
      if (c->stats()["openai"].shared_limit != mode) return false;
    return true;
  };
  ASSERT_TRUE(eventually([&] { return out.ok.load() >= 40; }, std::chrono::seconds(5)));
  EXPECT_TRUE(modes("redis"));

  redis.kill();
  const int ok_at_kill = out.ok.load();
  ASSERT_TRUE(eventually([&] { return modes("local share"); }, std::chrono::seconds(2)));
  for (auto& c : clients) {
    const ProviderStats st = c->stats()["openai"];
    EXPECT_NE(st.shared_limit_reason.find("Redis unreachable"), std::string::npos) << st.shared_limit_reason;
  }
  // While down: calls go on, at most ceil(6 / 3) = 2 in flight per client (after the calls started
  // under the shared limit, 30 ms each, have finished).
  std::this_thread::sleep_for(milliseconds(100));
  int most_in_flight = 0;
  const auto down_until = Clock::now() + milliseconds(800);
  while (Clock::now() < down_until) {
    for (auto& c : clients) most_in_flight = std::max(most_in_flight, c->stats()["openai"].in_flight);
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_LE(most_in_flight, 2);
  EXPECT_GE(most_in_flight, 1);
  EXPECT_GT(out.ok.load(), ok_at_kill + 10) << "calls stalled while Redis was down";

  redis.start();
  const auto restarted = Clock::now();
  ASSERT_TRUE(eventually([&] { return modes("redis"); }, std::chrono::seconds(3)));
  EXPECT_LT(Clock::now() - restarted, std::chrono::milliseconds(2500));
  const int ok_at_restart = out.ok.load();
  ASSERT_TRUE(eventually([&] { return out.ok.load() >= ok_at_restart + 20; }, std::chrono::seconds(5)));
  stop = true;
  for (auto& f : feeders) f.join();
  clients.clear();
  EXPECT_EQ(out.failed.load(), 0) << (out.errors.empty() ? "" : out.errors.front());
  EXPECT_LE(sim.stats()["endpoints"][kEndpoint]["peak_in_flight"].get<int>(), 6 + 2 * 2);
}

TEST(SharedLimits, UnreachableFromTheStartUsesTheLocalShareOfTheRate) {
  // No Redis on the port: 60/min over 3 replicas is 20/min, a burst of 20, then one per 3 s.
  harness::ProviderSim sim({"--time-scale", "0"});
  std::string url;
  { url = testing::RedisServer().url(); }  // a port that was free and is closed again
  Outcomes out;
  {
    OutboundClient client(provider(sim, 64, 60), shared(url, 3));
    for (int i = 0; i < 40; ++i) client.send(image_request(), out.callback());
    EXPECT_TRUE(eventually([&] { return out.ok.load() >= 20; }, std::chrono::seconds(3)));
    std::this_thread::sleep_for(milliseconds(500));
    EXPECT_EQ(out.ok.load(), 20);
    const ProviderStats st = client.stats()["openai"];
    EXPECT_EQ(st.shared_limit, "local share");
    EXPECT_NE(st.shared_limit_reason.find("connecting to 127.0.0.1"), std::string::npos) << st.shared_limit_reason;
  }
  EXPECT_EQ(out.failed.load(), 0);
}

TEST(SharedLimits, SlotsOfACrashedReplicaComeBackWhenTheirLeasesExpire) {
  // A "replica" takes both slots for calls of a 300 ms timeout and dies without releasing them: the
  // leases expire 1.3 s later and a live client's call starts then, not before.
  testing::RedisServer redis;
  harness::ProviderSim sim({"--time-scale", "0"});
  {
    SharedLimiter crashed(shared(redis.url()));
    ASSERT_TRUE(crashed.up()) << crashed.reason();
    for (int i = 0; i < 2; ++i) ASSERT_EQ(crashed.acquire("openai", 0, 2, milliseconds(300)).kind, SharedLimiter::Decision::Kind::Granted);
    EXPECT_EQ(crashed.acquire("openai", 0, 2, milliseconds(300)).kind, SharedLimiter::Decision::Kind::Wait);
  }
  const auto t0 = Clock::now();
  OutboundClient client(provider(sim, 2, 0), shared(redis.url()));
  Outcomes out;
  client.send(image_request(), out.callback());
  ASSERT_TRUE(eventually([&] { return out.ok.load() + out.failed.load() == 1; }, std::chrono::seconds(5)));
  const auto waited = Clock::now() - t0;
  EXPECT_EQ(out.ok.load(), 1) << (out.errors.empty() ? "" : out.errors.front());
  EXPECT_GE(waited, milliseconds(1000));
  EXPECT_LT(waited, milliseconds(2500));
  EXPECT_GT(client.stats()["openai"].shared_waits, 0u);
}

TEST(SharedLimits, AnIdleClientStillSeesRedisGoAndComeBack) {
  // No calls: the mode (stats, gauge) follows Redis through the idle PING.
  testing::RedisServer redis;
  harness::ProviderSim sim({"--time-scale", "0"});
  OutboundClient client(provider(sim, 4, 0), shared(redis.url()));
  auto mode = [&] { return client.stats()["openai"].shared_limit; };
  EXPECT_EQ(mode(), "redis");
  redis.kill();
  EXPECT_TRUE(eventually([&] { return mode() == "local share"; }, std::chrono::milliseconds(2500)));
  EXPECT_NE(client.stats()["openai"].shared_limit_reason.find("PING"), std::string::npos) << client.stats()["openai"].shared_limit_reason;
  redis.start();
  EXPECT_TRUE(eventually([&] { return mode() == "redis"; }, std::chrono::milliseconds(2500)));
}

TEST(SharedLimits, LocalShareRoundsUpToAtLeastOne) {
  EXPECT_EQ(SharedLimiter::local_share(8, 3), 3);
  EXPECT_EQ(SharedLimiter::local_share(6, 3), 2);
  EXPECT_EQ(SharedLimiter::local_share(1, 3), 1);
  EXPECT_EQ(SharedLimiter::local_share(100.0, 3), 34.0);
  EXPECT_EQ(SharedLimiter::local_share(0.5, 3), 1.0);
  EXPECT_EQ(SharedLimiter::local_share(0.0, 3), 0.0);  // unlimited stays unlimited
}

}  // namespace
}  // namespace pipelined::outbound

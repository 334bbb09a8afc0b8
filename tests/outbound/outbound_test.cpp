// The outbound client against provider-sim: connection reuse, deadlines, 429 + Retry-After,
// many requests in flight on one I/O thread, the order waiting calls start in.
#include "daemon/outbound/outbound.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>

#include "tests/pipelines/harness.h"

namespace pipelined::outbound {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::map<std::string, config::ProviderConfig> providers(
    const harness::ProviderSim& sim, int max_in_flight = 8, int retries = 3,
    config::ProviderConfig::QueueOrder order = config::ProviderConfig::QueueOrder::Request) {
  config::ProviderConfig p;
  p.queue_order = order;
  p.name = "openai";
  p.base_url = sim.url() + "/v1";
  p.api_key = "k";
  p.max_in_flight = max_in_flight;
  p.max_retries = retries;
  p.backoff_base = std::chrono::milliseconds(10);
  return {{"openai", p}};
}

Request image_request(Clock::duration deadline = std::chrono::seconds(30)) {
  Request r;
  r.provider = "openai";
  r.path = "images/generations";
  r.body = json{{"model", "dall-e-3"}, {"prompt", "tuna"}}.dump();
  r.deadline = Clock::now() + deadline;
  return r;
}

Response send_sync(OutboundClient& client, Request r) {
  std::promise<Response> p;
  auto f = p.get_future();
  client.send(std::move(r), [&p](Response res) { p.set_value(std::move(res)); });
  return f.get();
}

TEST(Outbound, ReusesConnections) {
  harness::ProviderSim sim({"--time-scale", "0"});
  OutboundClient client(providers(sim));
  for (int i = 0; i < 20; ++i) {
    auto r = send_sync(client, image_request());
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.attempts, 1);
  }
  EXPECT_LE(sim.stats()["connections"].get<int>(), 2);
  EXPECT_EQ(client.stats()["openai"].requests, 20u);
}

TEST(Outbound, DeadlineCutsARequestOff) {
  harness::ProviderSim sim({"--time-scale", "1"});  // an image takes 6 s
  OutboundClient client(providers(sim));
  const auto t0 = Clock::now();
  auto r = send_sync(client, image_request(std::chrono::milliseconds(200)));
  EXPECT_EQ(r.error_class, "timeout");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
}

TEST(Outbound, HonoursRetryAfterOn429) {
  // The sim takes one image request at a time (1.2 s each here) and answers 429 + Retry-After 0.2 s
  // to the other; the client retries after it and both succeed.
  harness::ProviderSim sim({"--time-scale", "0.2", "--max-in-flight", "1"});
  OutboundClient client(providers(sim, 4, 20));
  auto first = std::async(std::launch::async, [&] { return send_sync(client, image_request()); });
  auto second = std::async(std::launch::async, [&] { return send_sync(client, image_request()); });
  const Response a = first.get(), b = second.get();
  EXPECT_EQ(a.status, 200) << a.error;
  EXPECT_EQ(b.status, 200) << b.error;
  EXPECT_GT(std::max(a.attempts, b.attempts), 1);
  EXPECT_GE(client.stats()["openai"].rate_limited, 1u);
  EXPECT_EQ(sim.stats()["endpoints"]["images/generations"]["peak_in_flight"], 1);
}

TEST(Outbound, ServerErrorsAreRetriedThenReported) {
  harness::ProviderSim sim({"--time-scale", "0", "--error-rate", "1"});
  OutboundClient client(providers(sim, 8, 2));
  auto r = send_sync(client, image_request());
  EXPECT_EQ(r.error_class, "upstream");
  EXPECT_EQ(r.attempts, 3);  // the first try and two retries
  EXPECT_EQ(sim.stats()["endpoints"]["images/generations"]["errors"], 3);
}

TEST(Outbound, HundredsInFlightOnOneThreadRespectTheLimit) {
  harness::ProviderSim sim({"--time-scale", "0.01"});
  OutboundClient client(providers(sim, 16));
  constexpr int kRequests = 200;
  std::atomic<int> ok{0}, done{0};
  std::vector<std::atomic<int>> calls(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    client.send(image_request(), [&, i](Response r) {
      calls[i].fetch_add(1);
      if (r.status == 200) ok.fetch_add(1);
      done.fetch_add(1);
    });
  }
  while (done.load() < kRequests) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(ok.load(), kRequests);
  for (auto& c : calls) EXPECT_EQ(c.load(), 1);
  EXPECT_LE(sim.stats()["endpoints"]["images/generations"]["peak_in_flight"].get<int>(), 16);
  EXPECT_EQ(client.stats()["openai"].peak_in_flight, 16);
}

// The order the calls of one slot (max_in_flight 1) complete in, which is the order they started:
// a call the slot is busy with, then two calls of a newer user request, then two of an older one.
std::vector<std::string> completion_order(config::ProviderConfig::QueueOrder order) {
  harness::ProviderSim sim({"--time-scale", "0.05"});  // an image takes 0.3 s
  OutboundClient client(providers(sim, 1, 0, order));
  const auto now = Clock::now();
  std::mutex mu;
  std::vector<std::string> completed;
  std::atomic<int> done{0};
  auto send = [&](const std::string& name, Clock::time_point request_arrived) {
    Request r = image_request();
    r.request_arrived = request_arrived;
    client.send(std::move(r), [&, name](Response res) {
      EXPECT_EQ(res.status, 200) << name << ": " << res.error;
      std::lock_guard lock(mu);
      completed.push_back(name);
      done.fetch_add(1);
    });
  };
  send("busy", now - std::chrono::seconds(20));  // the oldest: started first even if admitted with the rest
  send("newer 1", now);
  send("newer 2", now);
  send("older 1", now - std::chrono::seconds(10));
  send("older 2", now - std::chrono::seconds(10));
  while (done.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(sim.stats()["endpoints"]["images/generations"]["peak_in_flight"], 1);
  return completed;
}

TEST(Outbound, WaitingCallsStartOldestRequestFirst) {
  using Order = config::ProviderConfig::QueueOrder;
  EXPECT_EQ(completion_order(Order::Request), (std::vector<std::string>{"busy", "older 1", "older 2", "newer 1", "newer 2"}));
  // queue_order: arrival keeps the order the calls were sent in.
  EXPECT_EQ(completion_order(Order::Arrival), (std::vector<std::string>{"busy", "newer 1", "newer 2", "older 1", "older 2"}));
}

TEST(Outbound, QueuedCallFailsAtItsDeadlineWhereverItWaits) {
  // The slot is busy for 1.2 s and an older request's call waits before ours: ours fails with the
  // timeout class when its deadline passes, not when it reaches the front.
  harness::ProviderSim sim({"--time-scale", "0.2"});
  OutboundClient client(providers(sim, 1, 0));
  const auto now = Clock::now();
  std::atomic<int> others{0};
  for (int i = 0; i < 2; ++i) {
    Request r = image_request();
    r.request_arrived = now - std::chrono::seconds(10);
    client.send(std::move(r), [&](Response res) {
      EXPECT_EQ(res.status, 200) << res.error;
      others.fetch_add(1);
    });
  }
  const auto t0 = Clock::now();
  Request mine = image_request(std::chrono::milliseconds(300));
  mine.request_arrived = now;
  const Response r = send_sync(client, std::move(mine));
  const auto waited = Clock::now() - t0;
  EXPECT_EQ(r.error_class, "timeout");
  EXPECT_NE(r.error.find("deadline passed while queued"), std::string::npos) << r.error;
  EXPECT_EQ(r.attempts, 0);
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  EXPECT_LT(waited, std::chrono::milliseconds(1000));  // the busy call takes 1.2 s
  EXPECT_EQ(others.load(), 0);
  while (others.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

TEST(Outbound, UnknownProviderAndShutdownAnswerOnce) {
  harness::ProviderSim sim({"--time-scale", "1"});
  std::atomic<int> answered{0};
  {
    OutboundClient client(providers(sim));
    Request r = image_request();
    r.provider = "nope";
    auto res = send_sync(client, r);
    EXPECT_NE(res.error.find("unknown provider 'nope'"), std::string::npos);
    for (int i = 0; i < 5; ++i) client.send(image_request(), [&](Response) { answered.fetch_add(1); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }  // destroyed with 5 requests in flight
  EXPECT_EQ(answered.load(), 5);
}

}  // namespace
}  // namespace pipelined::outbound

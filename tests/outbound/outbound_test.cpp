// The outbound client against provider-sim: connection reuse, deadlines, 429 + Retry-After,
// many requests in flight on one I/O thread.
#include "daemon/outbound/outbound.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "tests/pipelines/harness.h"

namespace pipelined::outbound {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::map<std::string, config::ProviderConfig> providers(const harness::ProviderSim& sim, int max_in_flight = 8, int retries = 3) {
  config::ProviderConfig p;
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

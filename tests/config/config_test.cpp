#include "daemon/config/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

namespace pipelined::config {
namespace {

// A small valid config; tests break one thing in it at a time.
constexpr const char* kValid = R"(server:
  listen: 127.0.0.1:0
pipelines:
  p:
    stages:
      a:
        variants:
          serial: { plugin: test_echo }
        stable: serial
      b:
        needs: [a]
        variants:
          serial:   { plugin: test_echo, config: { n: 3, ratio: 0.5, flag: true, name: x, quoted: "7" } }
          parallel: { plugin: test_echo, after: [a] }
        stable: serial
endpoints:
  - method: POST
    path: /run
    pipeline: p
    response:
      out: $stages.b/x
      t: $meta.elapsed_s
)";

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// The single error of a load, or a failure listing all of them.
ConfigError only_error(const std::string& yaml) {
  auto r = load_string(yaml, "test.yaml");
  EXPECT_EQ(r.config, nullptr);
  std::string all;
  for (const auto& e : r.errors) all += e.to_string() + "\n";
  EXPECT_EQ(r.errors.size(), 1u) << all;
  return r.errors.empty() ? ConfigError{} : r.errors.front();
}

TEST(Config, ValidConfigLoads) {
  auto r = load_string(kValid);
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().to_string();
  const Config& c = *r.config;
  EXPECT_EQ(c.server.listen_address, "127.0.0.1");
  EXPECT_EQ(c.server.listen_port, 0);
  EXPECT_EQ(c.admin.socket_path, "var/admin.sock");  // default: under state_directory
  const PipelineConfig* p = c.pipeline("p");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->stages.size(), 2u);
  EXPECT_EQ(p->stages[1].needs, std::vector<std::string>{"a"});
  const VariantConfig* serial = p->stages[1].variant("serial");
  ASSERT_NE(serial, nullptr);
  EXPECT_EQ(serial->config["n"], 3);
  EXPECT_EQ(serial->config["ratio"], 0.5);
  EXPECT_EQ(serial->config["flag"], true);
  EXPECT_EQ(serial->config["name"], "x");
  EXPECT_EQ(serial->config["quoted"], "7");  // quoted stays a string
  EXPECT_EQ(p->stages[1].variant("parallel")->after, std::vector<std::string>{"a"});
  ASSERT_EQ(c.endpoints.size(), 1u);
  EXPECT_EQ(c.endpoints[0].response["out"], "$stages.b/x");
}

TEST(Config, UnknownKeyNamesLineColumnAndKey) {
  auto e = only_error(replace(kValid, "        stable: serial\n      b:", "        stable: serial\n        varaints: {}\n      b:"));
  EXPECT_EQ(e.file, "test.yaml");
  EXPECT_EQ(e.line, 10);
  EXPECT_EQ(e.column, 9);
  EXPECT_EQ(e.key, "pipelines.p.stages.a.varaints");
  EXPECT_NE(e.message.find("unknown key 'varaints'"), std::string::npos);
  EXPECT_EQ(e.to_string(), "test.yaml:10:9: pipelines.p.stages.a.varaints: unknown key 'varaints'");
}

TEST(Config, UnknownTopLevelKey) {
  auto e = only_error(std::string(kValid) + "wokrer_threads: 4\n");
  EXPECT_EQ(e.key, "wokrer_threads");
  EXPECT_EQ(e.line, 23);
  EXPECT_EQ(e.column, 1);
}

TEST(Config, WrongTypeAndRange) {
  auto e = only_error(replace(kValid, "listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  io_threads: many"));
  EXPECT_EQ(e.key, "server.io_threads");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 15);
  e = only_error(replace(kValid, "listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  io_threads: 0"));
  EXPECT_NE(e.message.find("between 1 and"), std::string::npos) << e.message;
  e = only_error(replace(kValid, "listen: 127.0.0.1:0", "listen: localhost"));
  EXPECT_EQ(e.key, "server.listen");
  EXPECT_NE(e.message.find("host:port"), std::string::npos);
  e = only_error(std::string(kValid) + "rollout:\n  min_success_rate: 1.5\n");
  EXPECT_EQ(e.key, "rollout.min_success_rate");
  EXPECT_EQ(e.line, 24);
}

// Maps keyed by the user's names (providers, pipelines, stages, variants) and one-of-a-few values
// (queue_order, isolation, input, on_failure, fallback, format) each give one error naming the key.
TEST(Config, NamedMapsAndChoices) {
  auto e = only_error(std::string(kValid) + "providers: [a, b]\n");
  EXPECT_EQ(e.key, "providers");
  EXPECT_EQ(e.message, "expected a map of providers");
  // Then also "a stage needs at least one variant".
  auto list = load_string(replace(kValid, "      a:\n        variants:\n          serial: { plugin: test_echo }\n",
                                  "      a:\n        variants: [serial]\n"));
  ASSERT_FALSE(list.errors.empty());
  EXPECT_EQ(list.errors[0].key, "pipelines.p.stages.a.variants");
  EXPECT_EQ(list.errors[0].message, "expected a map of variants");
  e = only_error(replace(kValid, "        needs: [a]\n", "        needs: [a]\n        on_failure: maybe\n"));
  EXPECT_EQ(e.key, "pipelines.p.stages.b.on_failure");
  EXPECT_EQ(e.message, "expected 'fail' or 'partial', got 'maybe'");
  // A list where a choice belongs is one error, not also "got ''".
  e = only_error(replace(kValid, "    pipeline: p\n", "    pipeline: p\n    request: { format: [json] }\n"));
  EXPECT_EQ(e.key, "endpoints[0].request.format");
  EXPECT_EQ(e.message, "expected a scalar value");
  auto ok = load_string(replace(replace(kValid, "  p:\n    stages:\n", "  p:\n    fallback: whole_request\n    stages:\n"),
                                "        needs: [a]\n", "        needs: [a]\n        on_failure: partial\n        input: stream\n"));
  ASSERT_TRUE(ok.errors.empty()) << ok.errors.front().to_string();
  EXPECT_TRUE(ok.config->pipelines[0].fallback_whole_request);
  EXPECT_EQ(ok.config->pipelines[0].stages[1].on_failure, OnFailure::Partial);
  EXPECT_TRUE(ok.config->pipelines[0].stages[1].stream_input);
}

TEST(Config, MalformedYamlGivesTheParsersPosition) {
  auto e = only_error("server:\n  listen: [127.0.0.1\nworker_threads: 2\n");
  EXPECT_GT(e.line, 1);
  EXPECT_NE(e.message.find("malformed YAML"), std::string::npos);
}

TEST(Config, UnknownNeedAndStableNotAmongVariants) {
  auto e = only_error(replace(kValid, "needs: [a]", "needs: [z]"));
  EXPECT_EQ(e.key, "pipelines.p.stages.b.needs");
  EXPECT_EQ(e.line, 11);
  EXPECT_NE(e.message.find("unknown stage 'z'"), std::string::npos);
  e = only_error(replace(kValid, "        stable: serial\n      b:", "        stable: parallel\n      b:"));
  EXPECT_EQ(e.key, "pipelines.p.stages.a.stable");
  EXPECT_EQ(e.line, 9);
}

TEST(Config, CycleThroughNeedsAndAfter) {
  // a waits for b only when a's "serial" variant runs; b needs a: a cycle.
  auto e = only_error(replace(kValid, "serial: { plugin: test_echo }", "serial: { plugin: test_echo, after: [b] }"));
  EXPECT_NE(e.message.find("cycle"), std::string::npos) << e.message;
}

TEST(Config, StreamInputNeedsExactlyOneUpstream) {
  auto e = only_error(replace(kValid, "needs: [a]", "input: stream"));
  EXPECT_EQ(e.key, "pipelines.p.stages.b.input");
}

TEST(Config, EndpointChecks) {
  auto e = only_error(replace(kValid, "pipeline: p", "pipeline: nope"));
  EXPECT_EQ(e.key, "endpoints[0].pipeline");
  EXPECT_EQ(e.line, 19);
  e = only_error(replace(kValid, "$stages.b/x", "$stages.q/x"));
  EXPECT_EQ(e.key, "endpoints[0].response.out");
  EXPECT_NE(e.message.find("unknown stage 'q'"), std::string::npos);
  e = only_error(std::string(kValid) + "  - method: POST\n    path: /run\n    pipeline: p\n");
  EXPECT_NE(e.message.find("duplicate endpoint POST /run"), std::string::npos);
  e = only_error(replace(kValid, "path: /run", "path: /admin/x"));
  EXPECT_EQ(e.key, "endpoints[0].path");
}

TEST(Config, ServerSentEventKeys) {
  auto defaults = load_string(kValid);
  ASSERT_TRUE(defaults.errors.empty());
  EXPECT_TRUE(defaults.config->endpoints[0].streaming);  // on unless an endpoint turns it off
  EXPECT_EQ(defaults.config->server.sse_keepalive, Millis(15000));
  auto set = load_string(replace(replace(kValid, "    pipeline: p\n", "    pipeline: p\n    streaming: false\n"), "listen: 127.0.0.1:0",
                                 "listen: 127.0.0.1:0\n  sse_keepalive_ms: 500"));
  ASSERT_TRUE(set.errors.empty()) << set.errors.front().to_string();
  EXPECT_FALSE(set.config->endpoints[0].streaming);
  EXPECT_EQ(set.config->server.sse_keepalive, Millis(500));
  auto e = only_error(replace(kValid, "    pipeline: p\n", "    pipeline: p\n    streaming: maybe\n"));
  EXPECT_EQ(e.key, "endpoints[0].streaming");
}

TEST(Config, ProcessLimits) {
  auto defaults = load_string(kValid);
  ASSERT_TRUE(defaults.errors.empty());
  EXPECT_EQ(defaults.config->endpoints[0].max_concurrent, 64);
  EXPECT_EQ(defaults.config->server.max_request_memory_mb, 2048);
  auto off = load_string(replace(replace(kValid, "    pipeline: p\n", "    pipeline: p\n    max_concurrent: 0\n"), "listen: 127.0.0.1:0",
                                 "listen: 127.0.0.1:0\n  max_request_memory_mb: 0"));
  ASSERT_TRUE(off.errors.empty()) << off.errors.front().to_string();
  EXPECT_EQ(off.config->endpoints[0].max_concurrent, 0);  // 0: no cap, for both
  EXPECT_EQ(off.config->server.max_request_memory_mb, 0);
  EXPECT_EQ(only_error(replace(kValid, "    pipeline: p\n", "    pipeline: p\n    max_concurrent: -1\n")).key, "endpoints[0].max_concurrent");
  EXPECT_EQ(only_error(replace(kValid, "listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  max_request_memory_mb: lots")).key,
            "server.max_request_memory_mb");
}

TEST(Config, ProviderQueueOrder) {
  const std::string provider = "providers:\n  a:\n    base_url: http://127.0.0.1:1/v1\n";
  auto defaults = load_string(std::string(kValid) + provider);
  ASSERT_TRUE(defaults.errors.empty()) << defaults.errors.front().to_string();
  EXPECT_EQ(defaults.config->providers.at("a").queue_order, ProviderConfig::QueueOrder::Request);
  auto fifo = load_string(std::string(kValid) + provider + "    queue_order: arrival\n");
  ASSERT_TRUE(fifo.errors.empty()) << fifo.errors.front().to_string();
  EXPECT_EQ(fifo.config->providers.at("a").queue_order, ProviderConfig::QueueOrder::Arrival);
  auto e = only_error(std::string(kValid) + provider + "    queue_order: fifo\n");
  EXPECT_EQ(e.key, "providers.a.queue_order");
  EXPECT_NE(e.message.find("expected 'request' or 'arrival'"), std::string::npos) << e.to_string();
}

TEST(Config, SharedLimits) {
  auto absent = load_string(kValid);
  ASSERT_TRUE(absent.errors.empty()) << absent.errors.front().to_string();
  EXPECT_FALSE(absent.config->shared_limits.enabled());
  auto set =
      load_string(std::string(kValid) + "shared_limits:\n  redis: redis://:pw@10.0.0.5:6380/2\n  expected_replicas: 3\n  timeout_ms: 20\n");
  ASSERT_TRUE(set.errors.empty()) << set.errors.front().to_string();
  const SharedLimitsConfig& sl = set.config->shared_limits;
  EXPECT_TRUE(sl.enabled());
  EXPECT_EQ(sl.host, "10.0.0.5");
  EXPECT_EQ(sl.port, 6380);
  EXPECT_EQ(sl.db, 2);
  EXPECT_EQ(sl.password, "pw");
  EXPECT_EQ(sl.expected_replicas, 3);
  EXPECT_EQ(sl.timeout, Millis(20));
  auto defaults = load_string(std::string(kValid) + "shared_limits:\n  redis: redis://localhost\n");
  ASSERT_TRUE(defaults.errors.empty()) << defaults.errors.front().to_string();
  EXPECT_EQ(defaults.config->shared_limits.port, 6379);
  EXPECT_EQ(defaults.config->shared_limits.db, 0);
  EXPECT_EQ(defaults.config->shared_limits.expected_replicas, 1);
  auto e = only_error(std::string(kValid) + "shared_limits:\n  redis: http://127.0.0.1:6379\n");
  EXPECT_EQ(e.key, "shared_limits.redis");
  EXPECT_EQ(e.line, std::count(kValid, kValid + std::strlen(kValid), '\n') + 2);  // the line of `redis:`
  e = only_error(std::string(kValid) + "shared_limits:\n  redis: redis://127.0.0.1:99999/0\n");
  EXPECT_NE(e.message.find("bad port"), std::string::npos) << e.to_string();
  SharedLimitsConfig v6;
  EXPECT_EQ(parse_redis_url("redis://[::1]:6390", v6), "");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 6390);
  EXPECT_NE(parse_redis_url("redis://host:", v6), "");
  EXPECT_NE(parse_redis_url("redis://:pw@", v6), "");
  e = only_error(std::string(kValid) + "shared_limits:\n  expected_replicas: 0\n");
  EXPECT_EQ(e.key, "shared_limits.expected_replicas");
  e = only_error(std::string(kValid) + "shared_limits:\n  redis_url: redis://x\n");
  EXPECT_NE(e.message.find("redis_url"), std::string::npos) << e.to_string();
}

TEST(Config, TcpAdminNeedsTokenAndLoopback) {
  auto e = only_error(std::string(kValid) + "admin:\n  tcp: 127.0.0.1:9000\n");
  EXPECT_NE(e.message.find("token"), std::string::npos);
  e = only_error(std::string(kValid) + "admin:\n  tcp: 0.0.0.0:9000\n  token: t\n");
  EXPECT_NE(e.message.find("loopback"), std::string::npos);
}

TEST(Config, MetricsListen) {
  auto ok = load_string(std::string(kValid) + "metrics:\n  listen: 0.0.0.0:9464\n");
  ASSERT_TRUE(ok.errors.empty());
  EXPECT_EQ(ok.config->metrics.listen_address, "0.0.0.0");
  EXPECT_EQ(ok.config->metrics.listen_port, 9464);
  EXPECT_TRUE(load_string(kValid).config->metrics.listen_address.empty());  // optional: no listener
  auto e = only_error(std::string(kValid) + "metrics:\n  listen: 9464\n");
  EXPECT_EQ(e.key, "metrics.listen");
  e = only_error(replace(kValid, "listen: 127.0.0.1:0", "listen: 127.0.0.1:8080") + "metrics:\n  listen: 127.0.0.1:8080\n");
  EXPECT_NE(e.message.find("its own port"), std::string::npos) << e.to_string();
}

TEST(Config, StickyKeyForm) {
  auto e = only_error(std::string(kValid) + "rollout:\n  sticky_key: X-User-Id\n");
  EXPECT_EQ(e.key, "rollout.sticky_key");
  auto ok = load_string(std::string(kValid) + "rollout:\n  sticky_key: cookie:uid\n");
  EXPECT_TRUE(ok.errors.empty());
}

TEST(Config, AllErrorsAreCollected) {
  std::string yaml = replace(kValid, "needs: [a]", "needs: [z]");
  yaml = replace(yaml, "pipeline: p", "pipeline: nope");
  yaml += "bogus: 1\n";
  auto r = load_string(yaml);
  EXPECT_EQ(r.errors.size(), 3u);
}

TEST(Config, EnvironmentExpansion) {
  ::setenv("PIPELINED_TEST_KEY", "s3cret", 1);
  ::unsetenv("PIPELINED_TEST_UNSET");
  std::string yaml = std::string(kValid) +
                     "providers:\n  a:\n    base_url: ${PIPELINED_TEST_UNSET:-http://127.0.0.1:1/v1}\n    api_key: k-${PIPELINED_TEST_KEY}\n";
  auto r = load_string(yaml);
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().to_string();
  EXPECT_EQ(r.config->providers.at("a").api_key, "k-s3cret");
  EXPECT_EQ(r.config->providers.at("a").base_url, "http://127.0.0.1:1/v1");
  auto e = only_error(std::string(kValid) + "providers:\n  a:\n    base_url: http://x\n    api_key: ${PIPELINED_TEST_UNSET}\n");
  EXPECT_EQ(e.key, "providers.a.api_key");
  EXPECT_NE(e.message.find("PIPELINED_TEST_UNSET is not set"), std::string::npos);
}

TEST(Config, MissingFileIsAnError) {
  auto r = load_file("/nonexistent/pipelined.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].to_string().find("/nonexistent/pipelined.yaml"), std::string::npos);
}

// Every configs/*.yaml loads. Secrets without a default (the production example's API keys) are
// given placeholder values, as an operator's environment would.
TEST(Config, EveryShippedConfigLoads) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PIPELINED_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    ++seen;
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    static const std::regex kRequiredVar(R"(\$\{([A-Za-z_][A-Za-z0-9_]*)\})");
    for (std::sregex_iterator m(text.begin(), text.end(), kRequiredVar), end; m != end; ++m)
      ::setenv((*m)[1].str().c_str(), "placeholder", 0);
    auto r = load_file(entry.path().string());
    for (const auto& e : r.errors) ADD_FAILURE() << e.to_string();
  }
  EXPECT_GE(seen, 2);
}

}  // namespace
}  // namespace pipelined::config

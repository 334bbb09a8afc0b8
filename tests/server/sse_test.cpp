// Server-sent events on the frontend endpoints, against the pipelined binary on configs/default.yaml
// with provider-sim (docs/server-sent-events.md): event order, the result equal to the plain body,
// errors as events, a client that leaves cancels its run, streaming off per endpoint.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "tests/server/menu_daemon.h"
#include "tests/server/sse_client.h"

namespace pipelined::testing {
namespace {

using nlohmann::json;

// Both the sim and the daemon live for the whole suite: starting the daemon loads Tesseract.
class SseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Latencies at 0.05 of the real services': a 12-item menu takes about a second after OCR, so
    // events spread out and a client can leave in the middle.
    // A rollout's candidates fail: translate's parallel variant and medicine OCR's parallel one
    // call a provider nobody answers (medicine OCR without stage fallback: the whole request falls back).
    auto failing_candidates = [](std::string& yaml) {
      harness::replace_all(yaml, "\nproviders:\n",
                           "\nproviders:\n  dead:\n    base_url: http://127.0.0.1:1/v1\n    api_key: none\n    max_retries: 0\n");
      harness::replace_all(yaml, "menu_translate_parallel, isolation: process, config: { provider: google_translate, fallback_provider: openai",
                           "menu_translate_parallel, isolation: process, config: { provider: dead, fallback_provider: \"\"");
      harness::replace_all(yaml, "medicine_ocr_parallel, isolation: process, config: { provider: gemini",
                           "medicine_ocr_parallel, isolation: process, config: { provider: dead");
      harness::replace_all(yaml, "      ocr:\n        variants:\n          serial:   { plugin: medicine_ocr_serial",
                           "      ocr:\n        fallback: false\n        variants:\n          serial:   { plugin: medicine_ocr_serial");
    };
    daemon_ = new MenuDaemon({"--time-scale", "0.05"}, {"sse_keepalive_ms: 100", "request_log: @DIR@/requests.log"}, R"(
  - method: POST
    path: /translate-plain
    pipeline: menu
    streaming: false
    request: { format: multipart, files_field: file }
    response:
      categories: $stages.images/categories
      processing_time: $meta.elapsed_s
)",
                             failing_candidates);
  }
  static void TearDownTestSuite() { delete daemon_; }

  // A live rollout of `stages` on `pipeline` at 100 % while it exists; rolled back at the end.
  struct Rollout {
    Rollout(const std::string& pipeline, const json& stages) : pipeline(pipeline) {
      const auto r = admin_request(daemon_->dir() / "admin.sock", http::verb::post, "/admin/rollout",
                                   json{{"pipeline", pipeline}, {"percent", 100}, {"stages", stages}}.dump());
      EXPECT_EQ(r.result_int(), 200) << r.body();
    }
    ~Rollout() {
      admin_request(daemon_->dir() / "admin.sock", http::verb::post, "/admin/rollout/rollback", json{{"pipeline", pipeline}}.dump());
    }
    std::string pipeline;
  };

  // The request log's line for `request_id`, waiting up to 30 s for it.
  static json logged(const std::string& request_id) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      std::ifstream in(daemon_->dir() / "requests.log");
      for (std::string line; std::getline(in, line);) {
        const json j = json::parse(line, nullptr, false);
        if (j.is_object() && j.value("request_id", "") == request_id) return j;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return nullptr;
  }

  static inline MenuDaemon* daemon_ = nullptr;
};

json without_time(json body) {
  body.erase("processing_time");
  return body;
}

TEST_F(SseTest, StagesAndItemsComeBeforeAResultEqualToThePlainBody) {
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_12"));
  const SseResponse s = post_events(daemon_->port(), "/translate", body, type, {{"X-Request-Id", "sse-order"}});
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.content_type.rfind("text/event-stream", 0), 0u) << s.content_type;
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back().name, "result");

  std::vector<std::string> stages;
  std::map<std::string, std::size_t> stage_at;      // stage -> index of its stage event
  std::map<std::string, std::size_t> last_item_at;  // stage -> index of its last item event
  std::map<long long, json> items;                  // id -> the item as last seen
  for (std::size_t i = 0; i + 1 < s.events.size(); ++i) {
    const SseEvent& e = s.events[i];
    ASSERT_NE(e.name, "result") << "a second result";
    ASSERT_NE(e.name, "error") << e.data.dump();
    if (e.name == "stage") {
      stages.push_back(e.data["stage"]);
      stage_at[e.data["stage"]] = i;
      EXPECT_EQ(e.data["status"], "ok") << e.data.dump();
      EXPECT_TRUE(e.data["variant"].is_string());
      EXPECT_TRUE(e.data["duration_ms"].is_number());
    } else if (e.name == "item") {
      last_item_at[e.data["stage"]] = i;
      const json& item = e.data["item"];
      for (const char* key : {"id", "category_index", "item_index", "category", "original", "translation"})
        EXPECT_TRUE(item.contains(key)) << key << " missing in " << item.dump();
      json& seen = items[item["id"].get<long long>()];
      for (const auto& [k, v] : item.items()) seen[k] = v;
    }
  }
  EXPECT_EQ(stages, (std::vector<std::string>{"ocr", "categorize", "translate", "describe", "images"}));
  // Items gain translation (translate), then description (describe), then image (images), each
  // stage's items before that stage's end.
  for (const char* stage : {"translate", "describe", "images"}) {
    ASSERT_TRUE(last_item_at.count(stage)) << "no item events from " << stage;
    EXPECT_LT(last_item_at[stage], stage_at[stage]) << stage;
  }
  EXPECT_LT(stage_at["translate"], s.events.size());

  const json& result = s.events.back().data;
  std::size_t result_items = 0;
  for (const auto& c : result["categories"]) result_items += c["items"].size();
  EXPECT_EQ(items.size(), result_items);
  for (const auto& [id, item] : items) {
    EXPECT_TRUE(item.contains("description")) << item.dump();
    EXPECT_TRUE(item.contains("image_url")) << item.dump();
  }

  // The same input, plain: the same body but for the time it took.
  HttpClient plain(daemon_->port());
  const auto r = plain.request(http::verb::post, "/translate", body, type);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(without_time(result), without_time(json::parse(r.body())));

  // Recorded like any request.
  const json line = logged("sse-order");
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["outcome"], "ok");
  EXPECT_EQ(line["status"], 200);
  EXPECT_EQ(line["endpoint"], "/translate");
}

TEST_F(SseTest, QuietStretchesGetKeepAliveComments) {
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_12"));
  const SseResponse s = post_events(daemon_->port(), "/translate", body, type);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back().name, "result");
  EXPECT_GT(s.keep_alives, 0) << "OCR alone takes longer than the 100 ms keep-alive interval";
}

TEST_F(SseTest, BadInputIsAnErrorEvent) {
  const SseResponse s = post_events(daemon_->port(), "/translate", "{}", "application/json");
  EXPECT_EQ(s.status, 200);
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_EQ(s.events[0].name, "error");
  EXPECT_EQ(s.events[0].data["error"]["status"], 415) << s.events[0].data.dump();

  // The same body as the plain request's.
  HttpClient plain(daemon_->port());
  const auto r = plain.request(http::verb::post, "/translate", "{}", "application/json");
  EXPECT_EQ(r.result_int(), 415);
  EXPECT_EQ(s.events[0].data, json::parse(r.body()));
}

TEST_F(SseTest, PipelineFailureIsAnErrorEventWithTheStatus) {
  // A text file where the menu photo goes: OCR cannot read it, the run fails.
  const auto [body, type] = multipart_file("file", (harness::source_dir() / "tests/fixtures/menus/menu_ja_1.txt").string());
  const SseResponse s = post_events(daemon_->port(), "/translate", body, type);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back().name, "error");
  HttpClient plain(daemon_->port());
  const auto r = plain.request(http::verb::post, "/translate", body, type);
  EXPECT_EQ(r.result_int(), 422) << r.body();
  EXPECT_EQ(s.events.back().data, json::parse(r.body()));
  // The engine names the failed stage once; the plugin's own message does not name it again.
  EXPECT_EQ(json::parse(r.body())["error"]["class"], "invalid_input") << r.body();
  EXPECT_EQ(json::parse(r.body())["error"]["message"], "ocr: the uploaded file is not an image Leptonica can decode") << r.body();
  std::vector<std::string> stages;
  for (const auto& e : s.events)
    if (e.name == "stage") stages.push_back(e.data["stage"].get<std::string>() + " " + e.data["status"].get<std::string>());
  // The failed stage as it ended, then the stages that never ran, before the error.
  EXPECT_EQ(stages,
            (std::vector<std::string>{"ocr failed", "categorize skipped", "translate skipped", "describe skipped", "images skipped"}));
}

TEST_F(SseTest, ClientThatLeavesCancelsItsRun) {
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_40"));
  const SseResponse s = post_events(daemon_->port(), "/translate", body, type, {{"X-Request-Id", "sse-gone"}},
                                    [](const SseEvent& e) { return !(e.name == "stage" && e.data["stage"] == "categorize"); });
  ASSERT_TRUE(s.stopped) << "the run ended before the client could leave";
  const auto left = std::chrono::steady_clock::now();

  const json line = logged("sse-gone");
  ASSERT_TRUE(line.is_object()) << "the cancelled request was not recorded";
  EXPECT_EQ(line["outcome"], "cancelled");
  EXPECT_EQ(line["status"], 499);
  // Cancelled, not run to its end: describing and drawing 40 items takes seconds at this scale.
  EXPECT_LT(std::chrono::steady_clock::now() - left, std::chrono::seconds(3));
  // Counted in the metrics like any request.
  const auto metrics = admin_request(daemon_->dir() / "admin.sock", http::verb::get, "/metrics");
  EXPECT_NE(metrics.body().find(R"(pipelined_requests_total{pipeline="menu",endpoint="/translate",arm="stable",outcome="cancelled"} 1)"),
            std::string::npos)
      << metrics.body().substr(0, 3000);

  // The daemon goes on serving.
  HttpClient client(daemon_->port());
  EXPECT_EQ(client.request(http::verb::get, "/healthz").result_int(), 200);
  const auto [small, small_type] = multipart_file("file", MenuDaemon::menu("menu_ja_1"));
  const SseResponse again = post_events(daemon_->port(), "/translate", small, small_type);
  ASSERT_FALSE(again.events.empty());
  EXPECT_EQ(again.events.back().name, "result");
}

TEST_F(SseTest, StageFallbackIsToldAsItHappens) {
  Rollout rollout("menu", {{"translate", "parallel"}});
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_5"));
  const SseResponse s = post_events(daemon_->port(), "/translate", body, type);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back().name, "result") << s.events.back().data.dump();
  std::size_t fallback_at = s.events.size(), translate_at = s.events.size();
  for (std::size_t i = 0; i < s.events.size(); ++i) {
    const SseEvent& e = s.events[i];
    if (e.name == "fallback") {
      fallback_at = i;
      EXPECT_EQ(e.data["scope"], "stage");
      EXPECT_EQ(e.data["stage"], "translate");
      EXPECT_EQ(e.data["from"], "parallel");
      EXPECT_EQ(e.data["error_class"], "upstream") << e.data.dump();
    }
    if (e.name == "stage" && e.data["stage"] == "translate") {
      translate_at = i;
      EXPECT_EQ(e.data["status"], "fell_back");
      EXPECT_EQ(e.data["variant"], "serial");
      EXPECT_EQ(e.data["attempts"], 2);
    }
  }
  EXPECT_LT(fallback_at, translate_at);
  EXPECT_LT(translate_at, s.events.size());
}

TEST_F(SseTest, WholeRequestFallbackIsToldAndTheStableRunAnswers) {
  Rollout rollout("medicine", {{"ocr", "parallel"}});
  const auto [body, type] = multipart_file("files", (harness::source_dir() / "tests/fixtures/medicine/medicine_1.png").string());
  const SseResponse s = post_events(daemon_->port(), "/analyze", body, type, {{"X-Request-Id", "sse-whole"}});
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back().name, "result") << s.events.back().data.dump();
  EXPECT_FALSE(s.events.back().data["medicines"].empty()) << s.events.back().data.dump();
  std::size_t fallbacks = 0;
  for (const auto& e : s.events) {
    if (e.name != "fallback") continue;
    ++fallbacks;
    EXPECT_EQ(e.data["scope"], "request");
    EXPECT_EQ(e.data["to"], "stable");
  }
  EXPECT_EQ(fallbacks, 1u);
  const json line = logged("sse-whole");
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["fell_back"], true);
  EXPECT_EQ(line["arm"], "candidate");
}

TEST_F(SseTest, EndpointWithStreamingOffGivesThePlainAnswer) {
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_1"));
  const SseResponse s = post_events(daemon_->port(), "/translate-plain", body, type);
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.content_type, "application/json");
  EXPECT_TRUE(s.events.empty());
  const json plain = json::parse(s.body);
  EXPECT_TRUE(plain["categories"].is_array()) << s.body;
}

TEST_F(SseTest, DemoPageIsOffByDefault) {
  HttpClient client(daemon_->port());
  EXPECT_EQ(client.request(http::verb::get, "/demo/").result_int(), 404);
}

// Its own daemon: a request deadline shorter than OCR.
TEST(SseDeadline, APassedDeadlineIsAnErrorEventWith504) {
  MenuDaemon daemon({"--time-scale", "0.05"}, {}, "",
                    [](std::string& yaml) { harness::replace_all(yaml, "request_timeout_ms: 300000", "request_timeout_ms: 300"); });
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_40"));
  const SseResponse s = post_events(daemon.port(), "/translate", body, type);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back().name, "error");
  EXPECT_EQ(s.events.back().data["error"]["status"], 504) << s.events.back().data.dump();
  EXPECT_EQ(s.events.back().data["error"]["class"], "timeout");
  HttpClient plain(daemon.port());
  EXPECT_EQ(plain.request(http::verb::post, "/translate", body, type).result_int(), 504);
}

// Its own daemon: the images stage (on_failure: partial) times out, the answer is partial.
TEST(SsePartial, APartialResultIsTheResultEvent) {
  MenuDaemon daemon({"--time-scale", "0.05"}, {}, "", [](std::string& yaml) {
    harness::replace_all(yaml, "      images:\n        needs: [describe]\n",
                         "      images:\n        needs: [describe]\n        timeout_ms: 50\n");
  });
  const auto [body, type] = multipart_file("file", MenuDaemon::menu("menu_ja_5"));
  const SseResponse s = post_events(daemon.port(), "/translate", body, type);
  ASSERT_FALSE(s.events.empty());
  ASSERT_EQ(s.events.back().name, "result");
  const json& result = s.events.back().data;
  EXPECT_EQ(result["partial"], true) << result.dump();
  EXPECT_EQ(result["missing_stages"], json::array({"images"}));
  bool images_failed = false;
  for (const auto& e : s.events)
    if (e.name == "stage" && e.data["stage"] == "images") images_failed = e.data["status"] == "failed";
  EXPECT_TRUE(images_failed);
  HttpClient plain(daemon.port());
  const auto r = plain.request(http::verb::post, "/translate", body, type);
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(without_time(result), without_time(json::parse(r.body())));
}

}  // namespace
}  // namespace pipelined::testing

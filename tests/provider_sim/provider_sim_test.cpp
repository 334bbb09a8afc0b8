// provider-sim as a child process: protocol shapes, content, limits, faults and counters; and the
// official OpenAI Node client against it.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "provider-sim/content.h"
#include "tests/common/run_command.h"
#include "tests/pipelines/harness.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using pipelined::testing::Outcome;
using pipelined::testing::run;

json post(const harness::ProviderSim& sim, const std::string& path, const json& body, int* status = nullptr) {
  const fs::path file = fs::temp_directory_path() / ("provider_sim_test." + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << body.dump();
  const std::string out = run("curl -s -w '\\n%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary @" +
                              file.string() + " '" + sim.url() + path + "'").out;
  const auto nl = out.rfind('\n');
  if (status) *status = std::stoi(out.substr(nl + 1));
  return json::parse(out.substr(0, nl), nullptr, false);
}

TEST(ProviderSim, TranslationV2UsesTheGlossary) {
  harness::ProviderSim sim({"--time-scale", "0"});
  int status = 0;
  auto r = post(sim, "/language/translate/v2?key=k", {{"q", {"豚骨ラーメン", "牛肉麵", "まぐろ丼", "謎の料理"}}, {"target", "en"}}, &status);
  ASSERT_EQ(status, 200) << r.dump();
  const auto& t = r["data"]["translations"];
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0]["translatedText"], "Tonkotsu Ramen");
  EXPECT_EQ(t[0]["detectedSourceLanguage"], "ja");
  EXPECT_EQ(t[1]["translatedText"], "Beef Noodle Soup");
  EXPECT_EQ(t[1]["detectedSourceLanguage"], "zh-TW");
  EXPECT_EQ(t[2]["translatedText"], "Tuna Rice Bowl");  // longest-match segmentation
  EXPECT_EQ(t[3]["translatedText"], "謎の料理");  // nothing known: as it is, never bracketed
  post(sim, "/language/translate/v2", {{"q", "寿司"}, {"target", "en"}}, &status);
  EXPECT_EQ(status, 403);  // no key
}

// ---- content (pure functions) ------------------------------------------------------------------

const provider_sim::Glossary& glossary() {
  static const auto g = provider_sim::Glossary::load(std::string(PIPELINED_SOURCE_DIR) + "/provider-sim/data/glossary.tsv");
  return g;
}

// No brackets, and no CJK left next to English: a translation is all English or, when nothing of
// the text is known, the text as it is.
void expect_clean_translation(const std::string& source, const std::string& english) {
  EXPECT_EQ(english.find('['), std::string::npos) << source << " -> " << english;
  const bool ascii = std::all_of(english.begin(), english.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  EXPECT_TRUE(ascii || english == source) << source << " -> " << english;
}

TEST(ProviderSimContent, UnknownWordsAreRomanisedOrLeftOutNeverBracketed) {
  const auto& g = glossary();
  EXPECT_EQ(g.translate("ご飯もの"), "Rice Dishes");
  EXPECT_EQ(g.translate("ちゃーしゅー麺"), "Chaashuu Noodles");  // kana romanised, 麺 from the glossary
  EXPECT_EQ(g.translate("チャーシュー麺"), "Chaashuu Noodles");  // katakana alike
  EXPECT_EQ(g.translate("ほっこり"), "Hokkori");                   // small っ doubles
  EXPECT_EQ(g.translate("きゃべつ丼"), "Kyabetsu Rice Bowl");
  EXPECT_EQ(g.translate("謎丼"), "Rice Bowl");                     // unknown kanji left out
  EXPECT_EQ(g.translate("謎の料理"), "謎の料理");                  // nothing known: as it is
  for (const char* s : {"ご飯もの", "和牛丼", "謎の料理", "海老天丼", "特製ラーメン", "芒果冰沙", "麺類", "飯類", "其他", "その他"})
    expect_clean_translation(s, g.translate(s));
}

TEST(ProviderSimContent, EveryFixtureNameAndHeadingTranslatesCleanly) {
  namespace fs = std::filesystem;
  std::size_t texts = 0;
  for (const auto& e : fs::directory_iterator(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus")) {
    if (e.path().extension() != ".txt") continue;
    std::ifstream in(e.path());
    for (std::string l; std::getline(in, l);) {
      if (l.empty()) continue;
      const auto blank = l.rfind(' ');
      const std::string name = l.find_first_of("0123456789") == std::string::npos || blank == std::string::npos ? l : l.substr(0, blank);
      const std::string english = glossary().translate(name);
      expect_clean_translation(name, english);
      EXPECT_NE(english, name) << "not in the glossary: " << name;
      ++texts;
    }
  }
  EXPECT_GT(texts, 200u);
}

TEST(ProviderSimContent, DescriptionsCarryNoUntranslatedFragments) {
  const json request = {{"items",
                         {{{"id", 0}, {"original", "親子丼"}, {"translation", "Oyakodon"}, {"category", "Rice Dishes"}},
                          {{"id", 1}, {"original", "謎の料理"}, {"translation", "謎の料理"}, {"category", "謎類"}},
                          {{"id", 2}, {"original", "牛肉麵"}, {"translation", ""}, {"category", ""}}}}};
  const json d = provider_sim::menu_descriptions(request)["descriptions"];
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0]["description"], "Oyakodon is a house favourite among our rice dishes, prepared fresh to order.");
  EXPECT_EQ(d[1]["description"], "謎の料理 is a house favourite, prepared fresh to order.");  // untranslated category left out
  EXPECT_EQ(d[2]["description"], "牛肉麵 is a house favourite, prepared fresh to order.");
  for (const json& x : d) EXPECT_EQ(x["description"].get<std::string>().find('['), std::string::npos);
  // The categorizer's fallback category of a Japanese menu translates cleanly (was "[ご] rice [もの]").
  const json cats = provider_sim::menu_categories({{"lines", {{{"line", 0}, {"text", "親子丼 ¥900"}}}}});
  EXPECT_EQ(glossary().translate(cats["categories"][0]["name"].get<std::string>()), "Rice Dishes");
}

TEST(ProviderSim, CategorizeKeepsEveryItemOnce) {
  harness::ProviderSim sim({"--time-scale", "0"});
  json lines = json::array();
  const std::vector<std::string> text = {"寿司", "まぐろ ¥300", "サーモン ¥280", "麺類", "醤油ラーメン ¥850", "味噌ラーメン 900円"};
  for (std::size_t i = 0; i < text.size(); ++i) lines.push_back({{"line", i}, {"text", text[i]}});
  json request = {{"model", "m"},
                  {"messages", {{{"role", "user"}, {"content", json{{"task", "menu_categories"}, {"lines", lines}}.dump()}}}},
                  {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "menu_categories"}, {"schema", json::object()}}}}}};
  auto r = post(sim, "/v1/chat/completions", request);
  EXPECT_EQ(r["object"], "chat.completion");
  const json content = json::parse(r["choices"][0]["message"]["content"].get<std::string>());
  std::vector<int> seen;
  for (const auto& c : content["categories"])
    for (const auto& item : c["items"]) seen.push_back(item["line"]);
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 4, 5}));
  EXPECT_EQ(content["categories"][1]["name"], "麺類");
  EXPECT_EQ(content["categories"][1]["items"][1]["price"], "900円");
}

TEST(ProviderSim, GeminiAnswersFixtureTextByImageHash) {
  harness::ProviderSim sim({"--time-scale", "0"});
  const std::string b64 = run("base64 -w0 " PIPELINED_SOURCE_DIR "/tests/fixtures/medicine/medicine_3.png").out;
  json request = {{"contents", {{{"parts", {{{"text", "read"}}, {{"inline_data", {{"mime_type", "image/png"}, {"data", b64}}}},
                                            {{"inline_data", {{"mime_type", "image/png"}, {"data", "aGVsbG8="}}}}}}}}},
                  {"generationConfig", {{"responseMimeType", "application/json"}}}};
  auto r = post(sim, "/v1beta/models/gemini-1.5-flash:generateContent", request);
  const json texts = json::parse(r["candidates"][0]["content"]["parts"][0]["text"].get<std::string>());
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0].get<std::string>().substr(0, 6), "Zyrtec");
  EXPECT_EQ(texts[1], "");  // an unknown image
}

TEST(ProviderSim, InFlightLimitAnswers429WithRetryAfterAndCounts) {
  harness::ProviderSim sim({"--time-scale", "0.2", "--max-in-flight", "1"});
  const json image = {{"model", "dall-e-3"}, {"prompt", "x"}};
  const std::string cmd = "curl -s -o /dev/null -w '%{http_code}\\n' -X POST -H 'Content-Type: application/json' -d '" + image.dump() +
                          "' " + sim.url() + "/v1/images/generations";
  const std::string out = run("(" + cmd + " & " + cmd + " & " + cmd + " & wait)").out;
  EXPECT_NE(out.find("200"), std::string::npos) << out;
  EXPECT_NE(out.find("429"), std::string::npos) << out;
  const json stats = sim.stats();
  const json& e = stats["endpoints"]["images/generations"];
  EXPECT_EQ(e["peak_in_flight"], 1);
  EXPECT_GE(e["rate_limited"].get<int>(), 1);
  // While one request is in flight, the next gets 429 with Retry-After (one simulated second).
  const std::string headers = run("(" + cmd + " >/dev/null &) ; sleep 0.3; curl -s -D - -o /dev/null -X POST -H 'Content-Type: application/json' -d '" +
                                  image.dump() + "' " + sim.url() + "/v1/images/generations").out;
  EXPECT_NE(headers.find(" 429"), std::string::npos) << headers;
  EXPECT_NE(headers.find("Retry-After: 0.200"), std::string::npos) << headers;
}

// The answer log's times are this host's monotonic clock, so a client's steady_clock compares with
// them (bench/sse_bench): an answer is logged between the request's start and its end here.
TEST(ProviderSim, AnswerLogTimesEachAnswerOnTheClientsClock) {
  const fs::path log = fs::temp_directory_path() / ("provider_sim_answers." + std::to_string(::getpid()));
  harness::ProviderSim sim({"--time-scale", "0.05", "--answer-log", log.string()});
  const auto before = std::chrono::steady_clock::now();
  const json r = post(sim, "/v1/images/generations", {{"model", "dall-e-3"}, {"prompt", "ramen"}, {"n", 2}});
  const auto after = std::chrono::steady_clock::now();
  ASSERT_EQ(r["data"].size(), 2u) << r.dump();

  std::ifstream in(log);
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << "nothing logged";
  std::istringstream fields(line);
  long long ns = 0;
  std::string endpoint, url1, url2;
  int status = 0;
  fields >> ns >> endpoint >> status >> url1 >> url2;
  EXPECT_EQ(endpoint, "images/generations");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(url1, r["data"][0]["url"].get<std::string>());
  EXPECT_EQ(url2, r["data"][1]["url"].get<std::string>());
  const std::chrono::steady_clock::time_point at{std::chrono::nanoseconds(ns)};
  EXPECT_GE(at, before + std::chrono::milliseconds(250)) << "logged before the simulated 270-330 ms had passed";  // 6 s x 0.05, jitter 10 %
  EXPECT_LE(at, after);
  fs::remove(log);
}

TEST(ProviderSim, FaultRatesAreRoughlyHonoured) {
  harness::ProviderSim sim({"--time-scale", "0", "--error-rate", "0.3", "--malformed-rate", "0.2", "--seed", "5"});
  int errors = 0, malformed = 0, ok = 0;
  const json request = {{"q", {"寿司"}}, {"target", "en"}};
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    auto r = post(sim, "/language/translate/v2?key=k", request, &status);
    if (status == 500) ++errors;
    else if (r.is_discarded()) ++malformed;
    else ++ok;
  }
  EXPECT_NEAR(errors, 60, 25);
  EXPECT_NEAR(malformed, 40, 22);
  EXPECT_EQ(sim.stats()["endpoints"]["translate"]["errors"], errors);
}

TEST(ProviderSim, OfficialOpenAIClientUnderstandsIt) {
  if (run("command -v node").code != 0) GTEST_SKIP() << "node is not installed";
  const fs::path dir = fs::path(PIPELINED_BINARY_DIR) / "tests/provider_sim/npm";
  fs::create_directories(dir);
  if (!fs::exists(dir / "node_modules/openai")) {
    const Outcome npm = run("cd " + dir.string() + " && npm init -y >/dev/null && timeout 300 npm install --no-audit --no-fund openai@4");
    if (npm.code != 0) GTEST_SKIP() << "npm could not install openai (registry unreachable?): " << npm.out.substr(0, 500);
  }
  fs::copy_file(PIPELINED_SOURCE_DIR "/tests/provider_sim/openai_client.mjs", dir / "openai_client.mjs", fs::copy_options::overwrite_existing);
  harness::ProviderSim sim({"--time-scale", "0"});
  const Outcome client = run("cd " + dir.string() + " && node openai_client.mjs " + sim.url() + "/v1");
  ASSERT_EQ(client.code, 0) << client.out;
  const std::string& out = client.out;
  const json r = json::parse(out.substr(std::min(out.find('{'), out.size())), nullptr, false);
  ASSERT_FALSE(r.is_discarded()) << out;
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["finish_reason"], "stop");
  EXPECT_EQ(r["categories"][0]["name"], "寿司");
  EXPECT_EQ(r["categories"][0]["items"].size(), 2u);
  EXPECT_GT(r["usage_total"].get<int>(), 0);
  EXPECT_EQ(r["tool_name"], "get_weather");
  EXPECT_TRUE(r["tool_arguments"]["city"].is_string());
  EXPECT_TRUE(r["tool_arguments"]["days"].is_number_integer());
  EXPECT_EQ(r["image_url"].get<std::string>().rfind(sim.url() + "/images/", 0), 0u) << r.dump();
}

}  // namespace

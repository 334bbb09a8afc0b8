// Unit tests of the menu and medicine stage code on a fake host (tests/pipelines/fake_host.h) with a
// scripted provider: serial and parallel variants agree item for item, nothing is lost or doubled,
// order is kept, provider failures are handled, requests of parallel variants overlap.
#include "plugins/medicine/common/medicine.h"
#include "plugins/menu/common/menu.h"
#include "tests/pipelines/fake_host.h"
#include "tests/pipelines/fake_providers.h"

#include "plugins/menu/common/menu_text.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace {

using json = nlohmann::json;
using pipelined::plugins::Schedule;
namespace menu = pipelined::plugins::menu;
namespace medicine = pipelined::plugins::medicine;
namespace fs = std::filesystem;
using fake::has_digit;
using fake::menu_world;
using fake::gemini_world;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> fixture_lines(const std::string& name) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus" / (name + ".txt")));
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  return lines;
}

json ocr_output(const std::string& fixture) { return {{"lines", fixture_lines(fixture)}}; }

// Runs a stage function on a fresh fake run.
template <class F>
json run_stage(fake::Provider provider, F&& f, pl_run_context** keep = nullptr) {
  fake::Run run(std::move(provider));
  json out = f(run.ctx);
  run.raw.join();
  (void)keep;
  return out;
}

std::multiset<std::size_t> item_lines(const json& categorized) {
  std::multiset<std::size_t> out;
  for (const json& c : categorized["categories"])
    for (const json& i : c["items"]) out.insert(i["line"].get<std::size_t>());
  return out;
}

// ---- text helpers ------------------------------------------------------------------------------

TEST(MenuText, CleanLinesTrimsCollapsesAndRestoresYen) {
  auto lines = menu::clean_lines("  寿司 \n\nまぐろ\\300\n\t サーモン   ¥280 \n\xE3\x80\x80\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "寿司");
  EXPECT_EQ(lines[1], "まぐろ¥300");
  EXPECT_EQ(lines[2], "サーモン ¥280");
}

TEST(MenuText, SplitPrice) {
  EXPECT_EQ(menu::split_price("まぐろ ¥300"), std::make_pair(std::string("まぐろ"), std::string("¥300")));
  EXPECT_EQ(menu::split_price("まぐろ¥300"), std::make_pair(std::string("まぐろ"), std::string("¥300")));
  EXPECT_EQ(menu::split_price("牛肉麵 NT$180"), std::make_pair(std::string("牛肉麵"), std::string("NT$180")));
  EXPECT_EQ(menu::split_price("ラーメン 850円"), std::make_pair(std::string("ラーメン"), std::string("850円")));
  EXPECT_EQ(menu::split_price("寿司"), std::make_pair(std::string("寿司"), std::string("")));
  EXPECT_EQ(menu::split_price("300"), std::make_pair(std::string("300"), std::string("")));
  EXPECT_TRUE(menu::looks_like_item("うどん ７００"));
  EXPECT_FALSE(menu::looks_like_item("麺類"));
}

TEST(MenuText, ChunksCoverEveryLineOnceAndCutAtHeaders) {
  const auto lines = fixture_lines("menu_ja_60");
  for (std::size_t target : {1u, 3u, 8u, 15u, 100u}) {
    auto chunks = menu::chunk_lines(lines, target);
    std::multiset<std::size_t> items;
    for (const auto& chunk : chunks) {
      for (std::size_t i = 0; i + 1 < chunk.size(); ++i) EXPECT_LT(chunk[i], chunk[i + 1]);
      for (std::size_t l : chunk)
        if (has_digit(lines[l])) items.insert(l);
      // A chunk starts with a header (the cut fell before one, or it was repeated for context).
      EXPECT_FALSE(has_digit(lines[chunk.front()])) << "target " << target;
    }
    std::multiset<std::size_t> expected;
    for (std::size_t l = 0; l < lines.size(); ++l)
      if (has_digit(lines[l])) expected.insert(l);
    EXPECT_EQ(items, expected) << "target " << target;
  }
}

TEST(MenuText, MergeDropsDoublesAndRepairsLostItems) {
  std::vector<std::string> lines = {"寿司", "まぐろ ¥300", "えび ¥250", "麺類", "うどん ¥700", "そば ¥800"};
  json a = {{"categories", {{{"name", "麺類"}, {"items", {{{"line", 4}, {"name", "うどん"}, {"price", "¥700"}}}}},
                            {{"name", "寿司"}, {"items", {{{"line", 1}, {"name", "まぐろ"}, {"price", "¥300"}}}}}}}};
  json b = {{"categories", {{{"name", "寿司"}, {"items", {{{"line", 1}, {"name", "まぐろ"}, {"price", "¥300"}}, {{"line", 99}, {"name", "x"}, {"price", ""}}}}}}}};
  std::vector<std::string> warnings;
  json merged = menu::merge_categories(lines, {a, b}, &warnings);
  ASSERT_EQ(merged["categories"].size(), 2u);
  EXPECT_EQ(merged["categories"][0]["name"], "寿司");  // ordered by first line
  EXPECT_EQ(item_lines(merged), (std::multiset<std::size_t>{1, 2, 4, 5}));
  EXPECT_EQ(merged["categories"][0]["items"][1]["name"], "えび");  // repaired under its header
  EXPECT_EQ(merged["categories"][0]["items"][1]["price"], "¥250");
  EXPECT_EQ(merged["categories"][1]["items"][1]["line"], 5);
  EXPECT_EQ(warnings.size(), 4u);  // doubled line 1, line 99, lost lines 2 and 5
}

TEST(MenuText, LinesAreRunsOfInkWithSmallGapsJoined) {
  // Line 1: 10 inked rows; 12 blank; line 2: 4 inked, 2 blank (inside the line: the strokes of 二),
  // 5 inked; 12 blank; lines 3 and 4: 10 inked each, 5 blank between; blank tail.
  std::vector<bool> blank;
  auto add = [&](int n, bool b) { blank.insert(blank.end(), n, b); };
  add(3, true), add(10, false), add(12, true), add(4, false), add(2, true), add(5, false), add(12, true), add(10, false), add(5, true),
      add(10, false), add(6, true);
  const auto lines = menu::split_lines(blank);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], std::make_pair(3, 13));
  EXPECT_EQ(lines[1], std::make_pair(25, 36));
  EXPECT_EQ(lines[2], std::make_pair(48, 58));
  EXPECT_EQ(lines[3], std::make_pair(63, 73));
  EXPECT_TRUE(menu::split_lines(std::vector<bool>(50, true)).empty());
  EXPECT_EQ(menu::split_lines(std::vector<bool>(10, false)).size(), 1u);
}

TEST(MenuText, CurrencyConfusionsAreRepairedAndNeverLeftInNames) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(menu::split_price("牛肉麵 NTS180"), P("牛肉麵", "NT$180"));
  EXPECT_EQ(menu::split_price("Beef Noodle Soup NTS $180"), P("Beef Noodle Soup", "NT$180"));
  EXPECT_EQ(menu::split_price("牛肉麵 NT S180"), P("牛肉麵", "NT$180"));
  EXPECT_EQ(menu::split_price("牛肉麵 NT $ 180"), P("牛肉麵", "NT$180"));
  EXPECT_EQ(menu::split_price("牛肉麵 NTS$180"), P("牛肉麵", "NT$180"));
  EXPECT_EQ(menu::split_price("牛腩飯NTS130"), P("牛腩飯", "NT$130"));
  EXPECT_EQ(menu::split_price("牛肉麵 NT180"), P("牛肉麵", "NT$180"));
  EXPECT_EQ(menu::split_price("まぐろ \\300"), P("まぐろ", "¥300"));
  EXPECT_EQ(menu::split_price("まぐろ ¥ 300"), P("まぐろ", "¥300"));
  EXPECT_EQ(menu::split_price("まぐろ ￥300"), P("まぐろ", "¥300"));
  EXPECT_EQ(menu::split_price("天丼 ¥1O00"), P("天丼", "¥1000"));
  EXPECT_EQ(menu::split_price("ラーメン 850 円"), P("ラーメン", "850円"));
  EXPECT_EQ(menu::split_price("Coffee $ 5"), P("Coffee", "$5"));
  EXPECT_EQ(menu::split_price("Coffee US$5"), P("Coffee", "US$5"));
  EXPECT_EQ(menu::split_price("うどん ７００"), P("うどん", "700"));
  // S or T alone before digits is no currency; a word ending in NT is not a mark.
  EXPECT_EQ(menu::split_price("BOWLS 5"), P("BOWLS", "5"));
  EXPECT_EQ(menu::split_price("PINT 5"), P("PINT", "5"));
  EXPECT_EQ(menu::clean_lines("牛肉麵 NTS $180\n")[0], "牛肉麵 NT$180");
  EXPECT_TRUE(pipelined::menu_text::has_currency_token("Beef Noodle Soup NTS"));
  EXPECT_TRUE(pipelined::menu_text::has_currency_token("牛肉麵NT"));
  EXPECT_FALSE(pipelined::menu_text::has_currency_token("Mint Tea"));
}

TEST(MenuText, MenuWideRepairs) {
  using pipelined::menu_text::complete_currency;
  using pipelined::menu_text::unify_variants;
  using V = std::vector<std::string>;
  EXPECT_EQ(complete_currency(V{"寿司", "親子丼 ¥900", "牛丼 650", "カツ丼 ¥950"}), (V{"寿司", "親子丼 ¥900", "牛丼 ¥650", "カツ丼 ¥950"}));
  EXPECT_EQ(complete_currency(V{"a 5", "b ¥6"}), (V{"a 5", "b ¥6"}));  // no dominant mark
  // A Chinese menu (no kana) keeps Traditional forms; a Japanese one its own.
  EXPECT_EQ(unify_variants(V{"麺類", "牛肉麵 NT$180"}), (V{"麵類", "牛肉麵 NT$180"}));
  EXPECT_EQ(unify_variants(V{"麵類", "醤油ラーメン ¥850", "壽司"}), (V{"麺類", "醤油ラーメン ¥850", "寿司"}));
  EXPECT_EQ(unify_variants(V{"Coffee $5"}), (V{"Coffee $5"}));
}

TEST(MenuText, ParseMenuKeepsTheMenusScriptForFallbackCategories) {
  using pipelined::menu_text::parse_menu;
  const auto zh = parse_menu({{0, "牛肉麵 NTS180"}, {1, "滷肉飯 NT$45"}, {2, "甜點"}, {3, "豆花 NT$45"}});
  ASSERT_EQ(zh.size(), 3u);
  EXPECT_EQ(zh[0].name, "麵類");
  EXPECT_EQ(zh[0].items[0].name, "牛肉麵");
  EXPECT_EQ(zh[0].items[0].price, "NT$180");
  EXPECT_EQ(zh[1].name, "飯類");
  EXPECT_EQ(zh[2].name, "甜點");
  const auto ja = parse_menu({{0, "醤油ラーメン ¥850"}, {1, "親子丼 ¥900"}});
  ASSERT_EQ(ja.size(), 2u);
  EXPECT_EQ(ja[0].name, "麺類");
  EXPECT_EQ(ja[1].name, "ご飯もの");
}

// ---- menu stages: serial and parallel agree -----------------------------------------------------

class MenuStages : public ::testing::TestWithParam<std::string> {};

TEST_P(MenuStages, SerialAndParallelAgreeAtEveryStage) {
  const std::string fixture = GetParam();
  const auto lines = fixture_lines(fixture);
  std::multiset<std::size_t> expected_lines;
  for (std::size_t l = 0; l < lines.size(); ++l)
    if (has_digit(lines[l])) expected_lines.insert(l);

  menu::CategorizeConfig cc;
  cc.max_in_flight = 4;
  cc.min_chunk_lines = 3;
  // The parallel run's answers take 50 ms, so its chunks' requests overlap even on a slow, shared
  // machine (thread start-up under ThreadSanitizer takes milliseconds).
  fake::Run cs(menu_world), cp([](const fake::Call& c) {
    fake::Reply r = menu_world(c);
    r.delay_ms = 50;
    return r;
  });
  json cat_serial = fake::wait(menu::categorize(ocr_output(fixture), cs.ctx, cc, Schedule::Serial));
  json cat_parallel = fake::wait(menu::categorize(ocr_output(fixture), cp.ctx, cc, Schedule::Parallel));
  cs.raw.join();
  cp.raw.join();
  EXPECT_EQ(cat_serial, cat_parallel);
  EXPECT_EQ(item_lines(cat_serial), expected_lines);  // none lost, none doubled
  EXPECT_EQ(cs.raw.calls.size(), 1u);
  if (lines.size() > 6) {
    EXPECT_GT(cp.raw.peak_in_flight.load(), 1);
  }

  menu::TranslateConfig tc;
  fake::Run ts(menu_world), tp(menu_world);
  json tr_serial = fake::wait(menu::translate(cat_serial, ts.ctx, tc, Schedule::Serial));
  json tr_parallel = fake::wait(menu::translate(cat_serial, tp.ctx, tc, Schedule::Parallel));
  ts.raw.join();
  tp.raw.join();
  EXPECT_EQ(tr_serial, tr_parallel);
  EXPECT_EQ(ts.raw.peak_in_flight.load(), 1);
  EXPECT_EQ(tp.raw.calls.size(), cat_serial["categories"].size());
  EXPECT_EQ(tr_serial["categories"][0]["translation"], "T(" + cat_serial["categories"][0]["name"].get<std::string>() + ")");
  // Progress: every item once, translated, with the id describe gives it.
  ASSERT_EQ(tp.raw.emitted.size(), expected_lines.size());
  std::set<long long> translated_ids;
  for (const json& e : tp.raw.emitted) {
    EXPECT_TRUE(translated_ids.insert(e["id"].get<long long>()).second) << "emitted twice";
    const json& category = tr_serial["categories"][e["category_index"].get<std::size_t>()];
    EXPECT_EQ(e["translation"], category["items"][e["item_index"].get<std::size_t>()]["translation"]);
  }

  menu::DescribeConfig dc;
  dc.chunk_size = 4;
  dc.max_in_flight = 3;
  fake::Run ds(menu_world), dp(menu_world);
  json de_serial = fake::wait(menu::describe(tr_serial, ds.ctx, dc, Schedule::Serial));
  json de_parallel = fake::wait(menu::describe(tr_serial, dp.ctx, dc, Schedule::Parallel));
  ds.raw.join();
  dp.raw.join();
  EXPECT_EQ(de_serial, de_parallel);
  ASSERT_EQ(ds.raw.emitted.size(), expected_lines.size());
  ASSERT_EQ(dp.raw.emitted.size(), expected_lines.size());
  std::set<long long> ids;
  for (const json& e : dp.raw.emitted) EXPECT_TRUE(ids.insert(e["id"].get<long long>()).second) << "emitted twice";
  if (expected_lines.size() >= 3) {
    EXPECT_EQ(dp.raw.calls.size(), 3u);  // chunks = in-flight limit
  }

  // Stage 5 gets the emitted items, in whatever order they came.
  menu::ImagesConfig ic;
  fake::Run is(menu_world), ip(menu_world);
  for (auto it = dp.raw.emitted.rbegin(); it != dp.raw.emitted.rend(); ++it) {
    is.raw.input.push_back(*it);
    ip.raw.input.push_back(*it);
  }
  json im_serial = fake::wait(menu::images(is.ctx, ic, Schedule::Serial));
  json im_parallel = fake::wait(menu::images(ip.ctx, ic, Schedule::Parallel));
  is.raw.join();
  ip.raw.join();
  EXPECT_EQ(im_serial, im_parallel);
  EXPECT_EQ(is.raw.peak_in_flight.load(), 1);
  // Progress: every item once more, with its image.
  ASSERT_EQ(ip.raw.emitted.size(), expected_lines.size());
  for (const json& e : ip.raw.emitted) EXPECT_TRUE(e.contains("image_url") && e.contains("description")) << e.dump();
  // Final shape, order of stage 2.
  ASSERT_EQ(im_serial["categories"].size(), cat_serial["categories"].size());
  for (std::size_t c = 0; c < cat_serial["categories"].size(); ++c) {
    const json& fc = im_serial["categories"][c];
    const json& sc = cat_serial["categories"][c];
    EXPECT_EQ(fc["name"], sc["name"]);
    ASSERT_EQ(fc["items"].size(), sc["items"].size());
    for (std::size_t i = 0; i < fc["items"].size(); ++i) {
      const json& item = fc["items"][i];
      EXPECT_EQ(item["original"], sc["items"][i]["name"]);
      for (const char* key : {"original", "translation", "description", "image_url"})
        EXPECT_TRUE(item.contains(key) && item[key].is_string() && !item[key].get<std::string>().empty()) << key;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MenuStages,
                         ::testing::Values("menu_ja_1", "menu_ja_5", "menu_ja_12", "menu_ja_40", "menu_ja_60", "menu_zh_1",
                                           "menu_zh_8", "menu_zh_20", "menu_zh_40", "menu_zh_60"));

TEST(MenuStagesFaults, CategorizeAsksAgainAfterAMalformedAnswerThenFails) {
  std::atomic<int> calls{0};
  auto once_broken = [&](const fake::Call& c) {
    fake::Reply r = menu_world(c);
    if (calls++ == 0) r.body = "{\"choices\": [{\"message\": {\"content\": \"{not json\"}}]}";
    return r;
  };
  fake::Run run(once_broken);
  json out = fake::wait(menu::categorize(ocr_output("menu_ja_12"), run.ctx, {}, Schedule::Serial));
  run.raw.join();
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(item_lines(out).size(), 12u);

  fake::Run broken([](const fake::Call&) { return fake::Reply{200, "<html>oops</html>"}; });
  try {
    fake::wait(menu::categorize(ocr_output("menu_ja_12"), broken.ctx, {}, Schedule::Parallel));
    FAIL() << "expected a malformed error";
  } catch (const pipelined::sdk::StageError& e) {
    EXPECT_EQ(e.error_class(), "malformed");
  }
  broken.raw.join();
}

TEST(MenuStagesFaults, ProviderErrorsKeepTheirClass) {
  for (auto [reply, cls] : {std::pair{fake::Reply{500, "{\"error\":{\"message\":\"boom\"}}"}, std::string("upstream")},
                            std::pair{fake::Reply{429, "{}"}, std::string("rate_limited")},
                            std::pair{fake::Reply{0, "", "timeout"}, std::string("timeout")}}) {
    fake::Run run([reply = reply](const fake::Call&) { return reply; });
    try {
      fake::wait(menu::describe(json{{"categories", {{{"name", "a"}, {"items", {{{"original", "x"}, {"translation", "X"}}}}}}}}, run.ctx, {},
                     Schedule::Parallel));
      FAIL();
    } catch (const pipelined::sdk::StageError& e) {
      EXPECT_EQ(e.error_class(), cls);
    }
    run.raw.join();
  }
}

TEST(MenuStagesFaults, InputWithoutItsArrayIsInvalidInputNamingTheKey) {
  // Not an object, or an object without the array: the same error for every stage that needs one.
  for (const json& input : {json::array(), json{{"categories", "x"}}}) {
    fake::Run run([](const fake::Call&) { return fake::Reply{500, "{}"}; });
    try {
      fake::wait(menu::describe(input, run.ctx, {}, Schedule::Parallel));
      FAIL() << input.dump();
    } catch (const pipelined::sdk::StageError& e) {
      EXPECT_EQ(e.error_class(), std::string("invalid_input"));
      EXPECT_EQ(std::string(e.what()), "input has no 'categories' array");
    }
    run.raw.join();
  }
}

TEST(MenuStagesFaults, TranslateFallsBackToChatForTheCategoriesGoogleFailed) {
  fake::Run helper(menu_world);
  json categorized = fake::wait(menu::categorize(ocr_output("menu_ja_40"), helper.ctx, {}, Schedule::Serial));
  helper.raw.join();
  const std::string failing = categorized["categories"][2]["name"];
  auto google_fails_once_category = [&](const fake::Call& c) {
    if (c.provider == "google_translate" && c.body["q"][0] == failing) return fake::Reply{503, "unavailable"};
    return menu_world(c);
  };
  for (Schedule s : {Schedule::Serial, Schedule::Parallel}) {
    fake::Run run(google_fails_once_category);
    json out = fake::wait(menu::translate(categorized, run.ctx, {}, s));
    run.raw.join();
    EXPECT_EQ(out["categories"][2]["translation"], "C(" + failing + ")");
    EXPECT_EQ(out["categories"][1]["translation"], "T(" + categorized["categories"][1]["name"].get<std::string>() + ")");
    int chat = 0;
    for (const auto& c : run.raw.calls) chat += c.path == "chat/completions";
    EXPECT_EQ(chat, 1);
  }
}

TEST(MenuStagesFaults, AFailedImageMarksOnlyItsItem) {
  std::vector<json> items;
  for (int i = 0; i < 6; ++i)
    items.push_back({{"id", i}, {"category_index", i / 3}, {"item_index", i % 3}, {"category", "c" + std::to_string(i / 3)},
                     {"category_translation", "C"}, {"original", "o" + std::to_string(i)}, {"translation", "dish" + std::to_string(i)},
                     {"price", ""}, {"description", "d"}});
  auto fail_dish4 = [](const fake::Call& c) {
    if (c.body["prompt"].get<std::string>().find("dish4") != std::string::npos) return fake::Reply{500, "{}"};
    return menu_world(c);
  };
  for (Schedule s : {Schedule::Serial, Schedule::Parallel}) {
    fake::Run run(fail_dish4);
    for (const auto& i : items) run.raw.input.push_back(i);
    json out = fake::wait(menu::images(run.ctx, {}, s));
    run.raw.join();
    const json& failed = out["categories"][1]["items"][1];
    EXPECT_FALSE(failed.contains("image_url"));
    EXPECT_NE(failed["image_error"].get<std::string>().find("upstream"), std::string::npos);
    EXPECT_TRUE(out["categories"][1]["items"][0].contains("image_url"));
    EXPECT_EQ(out["categories"][0]["items"].size(), 3u);
  }
}

TEST(MenuStagesStreaming, ParallelImagesStartBeforeTheStreamEnds) {
  fake::Run run(menu_world);
  run.raw.input_done = false;
  std::thread producer([&] {
    for (int i = 0; i < 5; ++i) {
      run.raw.push_item({{"id", i}, {"category_index", 0}, {"item_index", i}, {"category", "c"}, {"category_translation", "C"},
                         {"original", "o"}, {"translation", "t" + std::to_string(i)}, {"price", ""}, {"description", ""}});
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
    run.raw.end_items();
  });
  const auto start = fake::Clock::now();
  json out = fake::wait(menu::images(run.ctx, {}, Schedule::Parallel));
  producer.join();
  run.raw.join();
  ASSERT_EQ(run.raw.calls.size(), 5u);
  // The first image request went out about when the first item arrived, not after the last one.
  EXPECT_LT(run.raw.calls[0].started - start, std::chrono::milliseconds(100));
  EXPECT_EQ(out["categories"][0]["items"].size(), 5u);
}

// No thread waits on the network: starting a stage returns to the caller with its requests in
// flight, and the stage ends on a host thread when the last answer arrives. A stage that waited
// would not return from start() before its answers, 200 ms later.
TEST(MenuStagesAsync, StartingAStageReturnsWithItsRequestsInFlight) {
  fake::Run run([](const fake::Call& c) {
    fake::Reply r = menu_world(c);
    r.delay_ms = 200;
    return r;
  });
  json categorized = {{"categories", json::array()}};
  for (int c = 0; c < 4; ++c) {
    json items = json::array();
    for (int i = 0; i < 5; ++i) items.push_back({{"line", c * 10 + i}, {"name", "n" + std::to_string(i)}, {"price", "1"}});
    categorized["categories"].push_back({{"name", "c" + std::to_string(c)}, {"items", items}});
  }
  menu::TranslateConfig config;
  config.provider = "";  // chat only: one request per category
  std::promise<json> result;
  auto future = result.get_future();
  pipelined::sdk::detail::start(menu::translate(categorized, run.ctx, config, Schedule::Parallel),
                                [&result](std::optional<json> value, std::exception_ptr error) {
                                  if (error) result.set_exception(error);
                                  else result.set_value(std::move(*value));
                                });
  {
    std::lock_guard<std::mutex> lock(run.raw.mu);
    EXPECT_EQ(run.raw.calls.size(), 4u) << "every category's request is out when start() returns";
  }
  EXPECT_EQ(future.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "no answer has arrived yet";
  json out = future.get();
  run.raw.join();
  ASSERT_EQ(out["categories"].size(), 4u);
  EXPECT_EQ(out["categories"][3]["items"][4]["translation"], "C(n4)");
}

// ---- medicine --------------------------------------------------------------------------------

pipelined::sdk::Attachment fixture_attachment(const std::string& name) {
  const fs::path p = fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/medicine" / name;
  return {name, "image/png", std::make_shared<const std::string>(read_file(p))};
}

TEST(Medicine, KeywordsOfAPackage) {
  auto k = medicine::extract_keywords("Advil\nIbuprofen Tablets 200 mg\n50 Coated Tablets\nImprint: ADV 200\nPfizer");
  EXPECT_EQ(k, (std::vector<std::string>{"advil", "ibuprofen", "200 mg", "adv 200", "pfizer"}));
  EXPECT_EQ(medicine::extract_keywords("Loxonin 60mg"), (std::vector<std::string>{"loxonin", "60 mg"}));
}

TEST(Medicine, OcrBatchesAllImagesInOneCallAndReportsTheUnreadable) {
  fake::Run run(gemini_world);
  pipelined::sdk::Payload input;
  input.attachments = {fixture_attachment("medicine_1.png"), fixture_attachment("medicine_unreadable.png"),
                       fixture_attachment("medicine_2.png"),
                       {"notes.txt", "text/plain", std::make_shared<const std::string>("hello")}};
  json out = fake::wait(medicine::ocr(input, run.ctx, {}));
  run.raw.join();
  ASSERT_EQ(run.raw.calls.size(), 1u);
  EXPECT_EQ(run.raw.calls[0].path, "models/gemini-1.5-flash:generateContent");
  EXPECT_EQ(run.raw.calls[0].body["contents"][0]["parts"].size(), 4u);  // prompt + 3 images
  ASSERT_EQ(out["images"].size(), 4u);
  EXPECT_TRUE(out["images"][0]["readable"]);
  EXPECT_FALSE(out["images"][1]["readable"]);
  EXPECT_TRUE(out["images"][2]["readable"]);
  EXPECT_FALSE(out["images"][3]["readable"]);
  ASSERT_EQ(out["unreadable"].size(), 2u);
  EXPECT_EQ(out["unreadable"][0]["name"], "medicine_unreadable.png");
  EXPECT_EQ(out["unreadable"][1]["name"], "notes.txt");
  EXPECT_NE(std::find(out["keywords"].begin(), out["keywords"].end(), "lipitor"), out["keywords"].end());
}

TEST(Medicine, DrugDatabaseAndCandidates) {
  medicine::DrugsConfig config;
  config.database = std::string(PIPELINED_SOURCE_DIR) + "/data/drugs.db";
  if (!fs::exists(config.database)) GTEST_SKIP() << config.database << " not built (scripts/make-drug-db)";
  medicine::check_database(config);
  json drugs = medicine::query_drugs(config)["drugs"];
  EXPECT_GE(drugs.size(), 300u);
  json images = json::array({{{"image", 0}, {"readable", true}, {"keywords", medicine::extract_keywords("Lipitor\nAtorvastatin 20 mg\nImprint: LI20")}}});
  auto candidates = medicine::candidate_drugs(drugs, images, 60);
  ASSERT_FALSE(candidates.empty());
  EXPECT_EQ((*candidates[0])["brand"], "Lipitor");
  EXPECT_EQ((*candidates[0])["strength"], "20 mg");
  for (const json* d : candidates) EXPECT_EQ((*d)["generic"], "atorvastatin");

  config.database = "/nonexistent/drugs.db";
  EXPECT_THROW(medicine::check_database(config), std::runtime_error);
}

TEST(Medicine, AnalysisKeepsOnlyCandidatesAndReportsPartial) {
  json drugs = {{"drugs", {{{"id", 1}, {"brand", "Advil"}, {"generic", "ibuprofen"}, {"ingredients", "ibuprofen"}, {"strength", "200 mg"},
                            {"form", "tablet"}, {"imprint", "ADV 200"}, {"shape", "round"}, {"colour", "brown"}, {"manufacturer", "Pfizer"}},
                           {{"id", 2}, {"brand", "Zocor"}, {"generic", "simvastatin"}, {"ingredients", "simvastatin"}, {"strength", "10 mg"},
                            {"form", "tablet"}, {"imprint", "Z 1"}, {"shape", "round"}, {"colour", "pink"}, {"manufacturer", "Merck"}}}}};
  json ocr = {{"images", {{{"image", 0}, {"name", "a.png"}, {"readable", true}, {"text", "Advil 200 mg"}, {"keywords", {"advil", "200 mg"}}},
                          {{"image", 1}, {"name", "b.png"}, {"readable", false}, {"text", ""}, {"keywords", json::array()}}}},
              {"keywords", {"advil", "200 mg"}},
              {"unreadable", {{{"image", 1}, {"name", "b.png"}, {"reason", "no legible text"}}}}};
  fake::Run run([](const fake::Call& c) {
    const json user = json::parse(c.body["messages"][1]["content"].get<std::string>());
    EXPECT_EQ(user["drugs"].size(), 1u);  // Zocor shares no keyword
    fake::Reply r;
    r.body = fake::chat_reply({{"medicines",
                                {{{"image", 0}, {"drug_id", 1}, {"confidence", 0.7}, {"matched_keywords", {"advil"}}},
                                 {{"image", 0}, {"drug_id", 1}, {"confidence", 1.4}, {"matched_keywords", {"advil", "200 mg"}}},
                                 {{"image", 0}, {"drug_id", 2}, {"confidence", 0.9}, {"matched_keywords", json::array()}},
                                 {{"image", 1}, {"drug_id", 1}, {"confidence", 0.9}, {"matched_keywords", json::array()}}}}});
    return r;
  });
  json out = fake::wait(medicine::analyze({{"drugs", drugs}, {"ocr", ocr}}, run.ctx, {}));
  run.raw.join();
  ASSERT_EQ(out["medicines"].size(), 1u);
  EXPECT_EQ(out["medicines"][0]["brand"], "Advil");
  EXPECT_EQ(out["medicines"][0]["confidence"], 1.0);
  EXPECT_EQ(out["medicines"][0]["image_name"], "a.png");
  EXPECT_TRUE(out["partial"]);
  EXPECT_EQ(out["unreadable_images"][0]["name"], "b.png");
}

TEST(Providers, Base64RoundTripAndImageSniffing) {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"), std::string("abcd"), std::string("\x00\xff\x10", 3)})
    EXPECT_EQ(pipelined::plugins::base64_decode(pipelined::plugins::base64_encode(s)), s);
  EXPECT_EQ(pipelined::plugins::base64_encode("hello"), "aGVsbG8=");
  EXPECT_EQ(pipelined::plugins::sniff_image_type(fixture_attachment("medicine_1.png").data->substr(0, 16)), "image/png");
  EXPECT_EQ(pipelined::plugins::sniff_image_type("\xff\xd8\xff\xe0"), "image/jpeg");
  EXPECT_EQ(pipelined::plugins::sniff_image_type("hello"), "");
}

TEST(Providers, ConfigTyposAreRefused) {
  EXPECT_THROW(menu::DescribeConfig::from({{"modle", "x"}}, "menu_describe_serial"), std::invalid_argument);
  EXPECT_THROW(menu::DescribeConfig::from({{"max_in_flight", 0}}, "menu_describe_serial"), std::invalid_argument);
  EXPECT_NO_THROW(menu::DescribeConfig::from({{"provider", "openai"}, {"model", "m"}, {"max_in_flight", 4}}, "x"));
}

}  // namespace

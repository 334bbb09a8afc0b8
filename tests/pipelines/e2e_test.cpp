// End to end: the menu and medicine pipelines on configs/default.yaml, in-process daemon core
// (tests/pipelines/harness.h) against provider-sim. Provider latencies are scaled down
// (--time-scale 0.002); local OCR runs for real.
#include "plugins/menu/common/menu.h"
#include "tests/pipelines/harness.h"

#include <gtest/gtest.h>

#include <future>
#include <set>

namespace {

using harness::json;
using pipelined::engine::RunResult;
namespace fs = std::filesystem;

fs::path state_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("pipelined-e2e-" + std::to_string(getpid()) + "-" + name);
  fs::create_directories(dir);
  return dir;
}

std::string describe(const RunResult& r) {
  std::string s = "ok=" + std::to_string(r.ok) + " partial=" + std::to_string(r.partial) + " error=" + r.error_class + ": " + r.error_message;
  for (const auto& st : r.stages)
    s += "\n  " + st.stage + "/" + st.variant + " " + pipelined::engine::to_string(st.status) + " " + st.error_class + " " + st.error_message;
  return s;
}

pipelined::config::VariantConfig& variant(pipelined::config::Config& c, const std::string& pipeline, const std::string& stage,
                                         const std::string& name) {
  for (auto& p : c.pipelines)
    if (p.name == pipeline)
      for (auto& s : p.stages)
        if (s.name == stage)
          for (auto& v : s.variants)
            if (v.name == name) return v;
  throw std::runtime_error("no variant " + pipeline + "/" + stage + "/" + name);
}

// A provider nobody answers (connection refused), no retries.
pipelined::config::ProviderConfig dead_provider(const std::string& name) {
  pipelined::config::ProviderConfig p;
  p.name = name;
  p.base_url = "http://127.0.0.1:1/v1";
  p.api_key = "none";
  p.max_retries = 0;
  p.timeout = std::chrono::milliseconds(2000);
  return p;
}

// The sidecar's category headers and item names of a menu fixture.
struct MenuText {
  std::vector<std::string> headers, items;  // item names without prices
};
MenuText menu_text(const std::string& fixture) {
  MenuText t;
  std::istringstream in(harness::read_file(harness::source_dir() / "tests/fixtures/menus" / (fixture + ".txt")));
  for (std::string l; std::getline(in, l);) {
    if (l.empty()) continue;
    if (pipelined::plugins::menu::looks_like_item(l)) t.items.push_back(pipelined::plugins::menu::split_price(l).first);
    else t.headers.push_back(l);
  }
  return t;
}

// The final menu: shape checks; returns the categories.
json check_menu(const RunResult& r, const std::string& fixture, bool expect_images = true) {
  EXPECT_TRUE(r.ok) << describe(r);
  if (!r.outputs.count("images")) {
    ADD_FAILURE() << "no images output\n" << describe(r);
    return json::array();
  }
  const json categories = r.outputs.at("images").json.at("categories");
  const MenuText text = menu_text(fixture);
  // Category names are the server's choice (docs/pipelines.md asks for the menu's headers; a keyword
  // table is fine too): not compared. Items are: every item of the menu exactly once.
  EXPECT_GE(categories.size(), 1u);
  std::size_t items = 0;
  std::multiset<std::string> originals;
  for (const json& cat : categories) {
    EXPECT_FALSE(cat.at("name").get<std::string>().empty());
    EXPECT_FALSE(cat.at("translation").get<std::string>().empty());
    for (const json& item : cat.at("items")) {
      originals.insert(item.at("original").get<std::string>());
      ++items;
      for (const char* key : {"original", "translation", "description"})
        EXPECT_FALSE(item.at(key).get<std::string>().empty()) << key << " in " << item.dump();
      if (expect_images) {
        EXPECT_TRUE(item.contains("image_url") && !item["image_url"].get<std::string>().empty()) << item.dump();
      } else {
        EXPECT_FALSE(item.contains("image_url")) << item.dump();
        EXPECT_TRUE(item.contains("image_error")) << item.dump();
      }
    }
  }
  EXPECT_EQ(items, text.items.size());
  // Local OCR is imperfect on CJK; the 40-item Japanese fixture reads completely (tesseract_test).
  std::size_t names_matching = 0;
  for (const auto& name : text.items) names_matching += originals.count(name) > 0;
  EXPECT_GE(names_matching * 100, text.items.size() * 80) << categories.dump(1);
  return categories;
}

class PipelinesE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      sim_ = new harness::ProviderSim({"--time-scale", "0.002", "--seed", "7"});
    } catch (const std::exception& e) {
      skip_reason_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    if (!sim_) GTEST_SKIP() << "provider-sim: " << skip_reason_;
  }
  static harness::ProviderSim* sim_;
  static std::string skip_reason_;
};
harness::ProviderSim* PipelinesE2E::sim_ = nullptr;
std::string PipelinesE2E::skip_reason_;

TEST_F(PipelinesE2E, EveryCombinationOfMenuVariantsGivesTheSameItems) {
  harness::Stack stack(harness::default_config(*sim_, state_dir("combinations")));
  const std::vector<std::string> stages = {"ocr", "categorize", "translate", "describe", "images"};
  const auto image = harness::fixture("menus/menu_ja_40.png");
  json baseline;
  for (unsigned mask = 0; mask < (1u << stages.size()); ++mask) {
    std::map<std::string, std::string> variants;
    std::string name;
    for (std::size_t s = 0; s < stages.size(); ++s) {
      variants[stages[s]] = (mask >> s) & 1 ? "parallel" : "serial";
      name += stages[s] + "=" + variants[stages[s]] + " ";
    }
    SCOPED_TRACE(name);
    RunResult r = stack.run("menu", {image}, variants);
    json categories = check_menu(r, "menu_ja_40");
    if (mask == 0) baseline = categories;
    else EXPECT_EQ(categories, baseline);
    for (const auto& st : r.stages) EXPECT_EQ(st.variant, variants[st.stage]) << st.stage << " fell back";
  }
}

// configs/default.yaml runs the candidates in runner processes (isolation: process); the same plugins
// loaded into the daemon answer exactly the same, for both pipelines.
TEST_F(PipelinesE2E, IsolatedAndInProcessCandidatesAnswerTheSame) {
  auto isolated_config = harness::default_config(*sim_, state_dir("isolated"));
  int isolated_variants = 0;
  auto local_config = harness::in_process_copy(*isolated_config, state_dir("in-process"), &isolated_variants);
  EXPECT_EQ(isolated_variants, 6);
  harness::Stack isolated(isolated_config), local(local_config);
  const auto menu = harness::fixture("menus/menu_ja_12.png");
  RunResult a = isolated.run("menu", {menu}, isolated.all("menu", "parallel"));
  RunResult b = local.run("menu", {menu}, local.all("menu", "parallel"));
  ASSERT_TRUE(a.ok) << describe(a);
  ASSERT_TRUE(b.ok) << describe(b);
  for (const auto& st : a.stages) EXPECT_EQ(st.variant, "parallel") << st.stage << " fell back: " << st.error_message;
  EXPECT_EQ(a.outputs.at("images").json, b.outputs.at("images").json);
  const std::vector<pipelined::sdk::Attachment> files = {harness::fixture("medicine/medicine_1.png"), harness::fixture("medicine/medicine_2.png")};
  RunResult c = isolated.run("medicine", files, isolated.all("medicine", "parallel"));
  RunResult d = local.run("medicine", files, local.all("medicine", "parallel"));
  ASSERT_TRUE(c.ok) << describe(c);
  ASSERT_TRUE(d.ok) << describe(d);
  EXPECT_EQ(c.outputs.at("analysis").json, d.outputs.at("analysis").json);
}

TEST_F(PipelinesE2E, MenusOfBothLanguagesAndSizesComeThroughWhole) {
  harness::Stack stack(harness::default_config(*sim_, state_dir("sizes")));
  for (const std::string fixture : {"menu_ja_1", "menu_ja_12", "menu_zh_8", "menu_zh_20", "menu_ja_60"}) {
    SCOPED_TRACE(fixture);
    for (const std::string arm : {"serial", "parallel"}) {
      RunResult r = stack.run("menu", {harness::fixture("menus/" + fixture + ".png")}, stack.all("menu", arm));
      EXPECT_TRUE(r.ok) << describe(r);
      if (!r.ok) continue;
      // OCR differs a little between whole-image and banded reading; the count of items it found
      // and the structure must hold.
      std::size_t items = 0;
      for (const json& c : r.outputs.at("images").json.at("categories")) items += c.at("items").size();
      const auto text = menu_text(fixture);
      EXPECT_GE(items * 100, text.items.size() * 80);
      EXPECT_LE(items, text.items.size());
    }
  }
}

TEST_F(PipelinesE2E, MenuWithoutAnyImageIsInvalidInput) {
  harness::Stack stack(harness::default_config(*sim_, state_dir("noimage")));
  RunResult r = stack.run("menu", {});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_class, "invalid_input") << describe(r);
}

TEST_F(PipelinesE2E, MedicineMatchesEachReadableImageAndNamesTheUnreadable) {
  harness::Stack stack(harness::default_config(*sim_, state_dir("medicine")));
  const std::vector<pipelined::sdk::Attachment> files = {harness::fixture("medicine/medicine_1.png"),
                                                         harness::fixture("medicine/medicine_unreadable.png"),
                                                         harness::fixture("medicine/medicine_2.png")};
  json outputs[2];
  int k = 0;
  for (const std::string arm : {"serial", "parallel"}) {
    SCOPED_TRACE(arm);
    RunResult r = stack.run("medicine", files, stack.all("medicine", arm));
    ASSERT_TRUE(r.ok) << describe(r);
    const json analysis = r.outputs.at("analysis").json;
    ASSERT_EQ(analysis.at("unreadable_images").size(), 1u) << analysis.dump(1);
    EXPECT_EQ(analysis["unreadable_images"][0]["name"], "medicine_unreadable.png");
    EXPECT_EQ(analysis["unreadable_images"][0]["image"], 1);
    EXPECT_TRUE(analysis.at("partial").get<bool>());
    std::map<long long, std::string> best;  // image -> brand of the most confident match
    for (const json& m : analysis.at("medicines"))
      if (!best.count(m["image"].get<long long>())) best[m["image"].get<long long>()] = m["brand"];
    EXPECT_EQ(best[0], "Advil") << analysis.dump(1);
    EXPECT_EQ(best[2], "Lipitor") << analysis.dump(1);
    EXPECT_FALSE(best.count(1));
    const json keywords = r.outputs.at("ocr").json.at("keywords");
    EXPECT_NE(std::find(keywords.begin(), keywords.end(), "ibuprofen"), keywords.end()) << keywords.dump();
    // Serial: OCR waits for the drug query (`after: [drugs]`).
    const auto* drugs = harness::stage_record(r, "drugs");
    const auto* ocr = harness::stage_record(r, "ocr");
    ASSERT_TRUE(drugs && ocr);
    if (arm == "serial") {
      EXPECT_GE(ocr->started, drugs->started + drugs->duration);
    }
    outputs[k++] = analysis;
  }
  EXPECT_EQ(outputs[0], outputs[1]);
}

TEST_F(PipelinesE2E, AFailedImageProviderLeavesItemsWithoutImagesNotTheMenu) {
  auto config = harness::default_config(*sim_, state_dir("images-down"));
  config->providers["images_down"] = dead_provider("images_down");
  for (const char* v : {"serial", "parallel"}) variant(*config, "menu", "images", v).config["provider"] = "images_down";
  harness::Stack stack(config);
  for (const std::string arm : {"serial", "parallel"}) {
    SCOPED_TRACE(arm);
    RunResult r = stack.run("menu", {harness::fixture("menus/menu_ja_40.png")}, stack.all("menu", arm));
    check_menu(r, "menu_ja_40", /*expect_images=*/false);
  }
}

TEST_F(PipelinesE2E, TranslateFallsBackToChatWhenGoogleTranslateIsDown) {
  auto config = harness::default_config(*sim_, state_dir("translate-down"));
  config->providers["google_translate"] = dead_provider("google_translate");
  config->providers["google_translate"].base_url = "http://127.0.0.1:1/language/translate/v2";
  harness::Stack stack(config);
  for (const std::string arm : {"serial", "parallel"}) {
    SCOPED_TRACE(arm);
    RunResult r = stack.run("menu", {harness::fixture("menus/menu_ja_40.png")}, stack.all("menu", arm));
    check_menu(r, "menu_ja_40");
  }
}

// ---- provider faults, each on its own sim --------------------------------------------------------

struct FaultCase {
  std::vector<std::string> sim_flags;
  std::string expected_class;
};

class PipelinesFaults : public ::testing::TestWithParam<FaultCase> {};

TEST_P(PipelinesFaults, EveryStageFailsCleanlyWithTheProviderErrorClass) {
  std::unique_ptr<harness::ProviderSim> sim;
  try {
    auto flags = GetParam().sim_flags;
    flags.insert(flags.end(), {"--time-scale", "0.002", "--seed", "3"});
    sim = std::make_unique<harness::ProviderSim>(flags);
  } catch (const std::exception& e) {
    GTEST_SKIP() << "provider-sim: " << e.what();
  }
  auto config = harness::default_config(*sim, state_dir("faults"));
  for (auto& [name, p] : config->providers) {
    p.max_retries = 1;
    p.backoff_base = std::chrono::milliseconds(10);
    p.timeout = std::chrono::milliseconds(500);
  }
  harness::Stack stack(config);
  for (const std::string arm : {"serial", "parallel"}) {
    SCOPED_TRACE(arm);
    RunResult menu = stack.run("menu", {harness::fixture("menus/menu_ja_5.png")}, stack.all("menu", arm));
    EXPECT_FALSE(menu.ok);
    EXPECT_EQ(menu.error_class, GetParam().expected_class) << describe(menu);
    RunResult medicine = stack.run("medicine", {harness::fixture("medicine/medicine_1.png")}, stack.all("medicine", arm));
    EXPECT_FALSE(medicine.ok);
    EXPECT_EQ(medicine.error_class, GetParam().expected_class) << describe(medicine);
  }
}

INSTANTIATE_TEST_SUITE_P(Sim, PipelinesFaults,
                         ::testing::Values(FaultCase{{"--error-rate", "1"}, "upstream"},
                                           FaultCase{{"--malformed-rate", "1"}, "malformed"},
                                           FaultCase{{"--timeout-rate", "1"}, "timeout"}),
                         [](const auto& info) { return info.param.expected_class; });

TEST(PipelinesLimits, ParallelVariantsStayWithinTheProvidersInFlightLimits) {
  std::unique_ptr<harness::ProviderSim> sim;
  try {
    // The sim answers 429 above 3 requests in flight per endpoint: none may come.
    sim = std::make_unique<harness::ProviderSim>(std::vector<std::string>{"--time-scale", "0.01", "--max-in-flight", "3"});
  } catch (const std::exception& e) {
    GTEST_SKIP() << "provider-sim: " << e.what();
  }
  auto config = harness::default_config(*sim, state_dir("limits"));
  for (auto& [name, p] : config->providers) p.max_in_flight = 3;
  for (const char* stage : {"categorize", "describe"}) variant(*config, "menu", stage, "parallel").config["max_in_flight"] = 3;
  harness::Stack stack(config);
  RunResult r = stack.run("menu", {harness::fixture("menus/menu_ja_40.png")}, stack.all("menu", "parallel"));
  check_menu(r, "menu_ja_40");
  const json stats = sim->stats();
  for (const char* endpoint : {"chat/completions", "images/generations", "translate"}) {
    const double peak = harness::sim_counter(stats, endpoint, {"peak_in_flight", "in_flight_peak", "max_in_flight"});
    EXPECT_GE(peak, 1) << endpoint << " in " << stats.dump(1);
    EXPECT_LE(peak, 3) << endpoint << " in " << stats.dump(1);
    EXPECT_LE(harness::sim_counter(stats, endpoint, {"rate_limited", "429", "status_429"}), 0) << endpoint << " in " << stats.dump(1);
  }
  // The parallel variants did use what they were allowed.
  EXPECT_EQ(harness::sim_counter(stats, "images/generations", {"peak_in_flight", "in_flight_peak", "max_in_flight"}), 3);
}

TEST(PipelinesLimits, RequestsPerMinuteAreRespected) {
  std::unique_ptr<harness::ProviderSim> sim;
  try {
    sim = std::make_unique<harness::ProviderSim>(std::vector<std::string>{"--time-scale", "0.002"});
  } catch (const std::exception& e) {
    GTEST_SKIP() << "provider-sim: " << e.what();
  }
  auto config = harness::default_config(*sim, state_dir("rpm"));
  config->providers["gemini"].requests_per_minute = 6;  // one every 10 s after the first burst
  harness::Stack stack(config);
  // 8 concurrent /analyze requests: 8 Gemini calls against 6 per minute.
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::future<RunResult>> runs;
  for (int i = 0; i < 8; ++i)
    runs.push_back(std::async(std::launch::async, [&] {
      return stack.run("medicine", {harness::fixture("medicine/medicine_3.png")}, stack.all("medicine", "parallel"));
    }));
  for (auto& f : runs) {
    RunResult r = f.get();
    EXPECT_TRUE(r.ok) << describe(r);
  }
  const double elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const json stats = sim->stats();
  EXPECT_EQ(harness::sim_counter(stats, "generateContent", {"served", "requests", "count"}), 8) << stats.dump(1);
  EXPECT_LE(harness::sim_counter(stats, "generateContent", {"rate_limited", "429", "status_429"}), 0) << stats.dump(1);
  // The 7th and 8th waited for tokens (6/min = one per 10 s): the limiter, not the sim, paced them.
  EXPECT_GE(elapsed_s, 9.0);
}

TEST(PipelinesLimits, Sim429sAreRetriedAfterRetryAfter) {
  std::unique_ptr<harness::ProviderSim> sim;
  try {
    // The sim allows 2 chat requests in flight; the daemon is configured for 8: the extra ones get
    // 429 + Retry-After and are retried by the outbound client.
    sim = std::make_unique<harness::ProviderSim>(std::vector<std::string>{"--time-scale", "0.002", "--max-in-flight", "2"});
  } catch (const std::exception& e) {
    GTEST_SKIP() << "provider-sim: " << e.what();
  }
  auto config = harness::default_config(*sim, state_dir("429"));
  for (auto& [name, p] : config->providers) p.max_retries = 20;
  harness::Stack stack(config);
  RunResult r = stack.run("menu", {harness::fixture("menus/menu_ja_40.png")}, stack.all("menu", "parallel"));
  check_menu(r, "menu_ja_40");
  const json stats = sim->stats();
  EXPECT_GT(harness::sim_counter(stats, "images/generations", {"rate_limited", "429", "status_429"}), 0) << stats.dump(1);
}

}  // namespace

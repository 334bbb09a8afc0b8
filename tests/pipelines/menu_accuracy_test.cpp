// What the frontend sees of the stable arm's reading: local OCR (libtesseract, serial and banded
// parallel) then provider-sim's categorizer (the stable arm's categorize stage against the emulator)
// over every menu fixture, scored against the fixture's ground truth (.txt beside the .png: one line
// per heading or item, an item's price after its last blank).
//
// Prints, per OCR variant and fixture language: items read exactly (name and price), items exactly
// in the right category, categories found. docs/benchmarks.md ("Menu reading accuracy") has the
// figures and the command. Asserts:
//   - serial and parallel OCR give identical parsed menus on every fixture;
//   - no item name contains a currency token;
//   - Chinese menus keep Chinese category names (no kana in them);
//   - item accuracy per language at or above the floors below (measured, docs/benchmarks.md);
//   - the same for the harder copies in menus/hard (rotated, noisy, JPEG, two columns), reported
//     beside the clean ones with floors of their own.
#include "plugins/menu/common/tesseract_reader.h"
#include "provider-sim/content.h"
#include "tests/pipelines/fake_host.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace {

using json = nlohmann::json;
using pipelined::plugins::Schedule;
namespace menu = pipelined::plugins::menu;
namespace fs = std::filesystem;

// Exact items (name and price) per fixture language, percent: at or above. Measured with Tesseract
// 5.3.0 (Debian 12): ja 98.3 % (116/118), zh 86.8 % (112/129), serial and parallel alike
// (docs/benchmarks.md); the floors leave a few points for another Tesseract build's misreads.
const std::map<std::string, double> kItemFloor = {{"ja", 95.0}, {"zh", 83.0}};
// The harder copies: ja 98.7 % (75/76), zh 83.0 % (83/100), measured alike.
const std::map<std::string, double> kHardItemFloor = {{"ja", 95.0}, {"zh", 80.0}};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const fs::path& fixture_dir() {
  static const fs::path dir = fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus";
  return dir;
}

// Every image with a ground truth in `dir` (relative to the menus), by name: "menu_ja_12" or, for
// the harder copies, "hard/menu_ja_12_rotated".
std::vector<std::string> fixtures_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(fixture_dir() / dir)) {
    const auto ext = e.path().extension();
    if ((ext == ".png" || ext == ".jpg") && fs::exists(fs::path(e.path()).replace_extension(".txt")))
      out.push_back((fs::path(dir) / e.path().stem()).relative_path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<std::string> fixtures() { return fixtures_in(""); }
std::vector<std::string> hard_fixtures() { return fixtures_in("hard"); }

// The image file of a fixture: .png, else .jpg.
fs::path image_of(const std::string& fixture) {
  const fs::path png = fixture_dir() / (fixture + ".png");
  return fs::exists(png) ? png : fixture_dir() / (fixture + ".jpg");
}

// "[hard/]menu_<language>_<n>[_kind]" -> language.
std::string language_of(const std::string& fixture) {
  const auto a = fixture.find("menu_");
  return a == std::string::npos ? "?" : fixture.substr(a + 5, 2);
}

struct Item {
  std::string category, name, price;
};

// Ground truth: lines without a digit are headings; others "name price" (price after the last blank).
std::vector<Item> ground_truth(const std::string& fixture) {
  std::istringstream in(read_file(fixture_dir() / (fixture + ".txt")));
  std::vector<Item> items;
  std::string heading;
  for (std::string l; std::getline(in, l);) {
    while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
    if (l.empty()) continue;
    if (l.find_first_of("0123456789") == std::string::npos) {
      heading = l;
      continue;
    }
    const auto blank = l.rfind(' ');
    items.push_back({heading, l.substr(0, blank), blank == std::string::npos ? "" : l.substr(blank + 1)});
  }
  return items;
}

const menu::TesseractReader& reader() {
  static const menu::TesseractReader r{menu::TesseractConfig{}};
  return r;
}

// OCR lines -> the stable arm's categorization (provider-sim's menu_categories).
json parse(const json& lines) {
  json request_lines = json::array();
  for (std::size_t i = 0; i < lines.size(); ++i) request_lines.push_back({{"line", i}, {"text", lines[i]}});
  return provider_sim::menu_categories({{"lines", request_lines}});
}

std::vector<Item> items_of(const json& menu) {
  std::vector<Item> out;
  for (const json& c : menu["categories"])
    for (const json& i : c["items"]) out.push_back({c.value("name", ""), i.value("name", ""), i.value("price", "")});
  return out;
}

// OCR lines and parsed menu per fixture and schedule, read once for all tests.
const json& ocr_lines(const std::string& fixture, Schedule schedule) {
  static std::map<std::pair<std::string, int>, json> cache;
  const auto key = std::make_pair(fixture, static_cast<int>(schedule));
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  fake::Run run([](const fake::Call&) { return fake::Reply{}; });
  return cache[key] = reader().read(read_file(image_of(fixture)), run.ctx, schedule)["lines"];
}
const json& parsed(const std::string& fixture, Schedule schedule) {
  static std::map<std::pair<std::string, int>, json> cache;
  const auto key = std::make_pair(fixture, static_cast<int>(schedule));
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  return cache[key] = parse(ocr_lines(fixture, schedule));
}

struct Score {
  std::size_t items = 0, exact = 0, in_category = 0, categories = 0, categories_found = 0;
  void add(const Score& o) {
    items += o.items, exact += o.exact, in_category += o.in_category, categories += o.categories, categories_found += o.categories_found;
  }
};

Score score(const std::vector<Item>& truth, const std::vector<Item>& got) {
  Score s;
  s.items = truth.size();
  std::vector<bool> used(got.size()), used_in_category(got.size());
  for (const Item& t : truth) {
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!used[i] && got[i].name == t.name && got[i].price == t.price) {
        used[i] = true;
        ++s.exact;
        break;
      }
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!used_in_category[i] && got[i].name == t.name && got[i].price == t.price && got[i].category == t.category) {
        used_in_category[i] = true;
        ++s.in_category;
        break;
      }
  }
  std::set<std::string> want, have;
  for (const Item& t : truth) want.insert(t.category);
  for (const Item& g : got) have.insert(g.category);
  s.categories = want.size();
  for (const auto& c : want) s.categories_found += have.count(c);
  return s;
}

double percent(std::size_t a, std::size_t b) { return b == 0 ? 100.0 : 100.0 * static_cast<double>(a) / static_cast<double>(b); }

std::string row(const std::string& label, const Score& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-36s items exact %3zu/%3zu (%5.1f %%)  in right category %3zu (%5.1f %%)  categories %2zu/%2zu",
                label.c_str(), s.exact, s.items, percent(s.exact, s.items), s.in_category, percent(s.in_category, s.items),
                s.categories_found, s.categories);
  return buf;
}

// Per fixture, per language and in all: printed; returns the per-language scores.
std::map<std::string, Score> report(const std::vector<std::string>& names, Schedule schedule, const std::string& label) {
  const std::string variant = (schedule == Schedule::Serial ? "serial" : "parallel") + label;
  std::map<std::string, Score> per_language;
  Score total;
  for (const auto& f : names) {
    const Score s = score(ground_truth(f), items_of(parsed(f, schedule)));
    std::printf("%s\n", row(variant + " " + f, s).c_str());
    if (std::getenv("MENU_ACCURACY_VERBOSE") != nullptr) {  // what was read, for a look at the misses
      for (const Item& t : ground_truth(f)) {
        bool found = false;
        for (const Item& g : items_of(parsed(f, schedule)))
          found = found || (g.name == t.name && g.price == t.price && g.category == t.category);
        if (!found) std::printf("  missed: %s / %s / %s\n", t.category.c_str(), t.name.c_str(), t.price.c_str());
      }
      for (const json& l : ocr_lines(f, schedule)) std::printf("  ocr:    %s\n", l.get<std::string>().c_str());
    }
    per_language[language_of(f)].add(s);
    total.add(s);
  }
  for (const auto& [language, s] : per_language) std::printf("%s\n", row(variant + " [" + language + "]", s).c_str());
  std::printf("%s\n", row(variant + " [all]", total).c_str());
  return per_language;
}

// Each variant's report, and its per-language item accuracy against `floors`.
void expect_floors(const std::vector<std::string>& names, const std::map<std::string, double>& floors, const std::string& label) {
  for (Schedule schedule : {Schedule::Serial, Schedule::Parallel})
    for (const auto& [language, s] : report(names, schedule, label)) {
      if (auto floor = floors.find(language); floor != floors.end()) {
        EXPECT_GE(percent(s.exact, s.items), floor->second) << static_cast<int>(schedule) << label << " " << language;
      }
    }
}

TEST(MenuAccuracy, ReportPerLanguageAndItemFloor) { expect_floors(fixtures(), kItemFloor, ""); }

// The harder copies (a slight rotation, noise, JPEG, two columns; scripts/make-fixtures), reported
// beside the clean ones, with their own floors.
TEST(MenuAccuracy, ReportHarderFixtures) { expect_floors(hard_fixtures(), kHardItemFloor, " hard"); }

TEST(MenuAccuracy, SerialAndParallelParseIdentically) {
  auto all = fixtures();
  for (const auto& f : hard_fixtures()) all.push_back(f);
  for (const auto& f : all) EXPECT_EQ(parsed(f, Schedule::Serial), parsed(f, Schedule::Parallel)) << f;
}

// A currency mark left in a name, checked independently of the parser: "$", "¥", "￥", an "NT"
// token (NT, NTS) or 円/元 right after a digit.
bool has_currency(const std::string& name) {
  if (name.find('$') != std::string::npos || name.find("¥") != std::string::npos || name.find("￥") != std::string::npos) return true;
  for (const char* suffix : {"円", "元"})
    for (auto at = name.find(suffix); at != std::string::npos; at = name.find(suffix, at + 1))
      if (at > 0 && name[at - 1] >= '0' && name[at - 1] <= '9') return true;
  std::istringstream words(name);
  for (std::string w; words >> w;)
    if (w.rfind("NT", 0) == 0 && w.size() <= 4) return true;
  // "NT" glued to the end of CJK text ("牛肉麵NTS").
  for (const char* tail : {"NT", "NTS"})
    if (name.size() > std::strlen(tail) && name.compare(name.size() - std::strlen(tail), std::string::npos, tail) == 0 &&
        static_cast<unsigned char>(name[name.size() - std::strlen(tail) - 1]) >= 0x80)
      return true;
  return false;
}

TEST(MenuAccuracy, NoItemNameContainsACurrencyToken) {
  for (const auto& f : fixtures())
    for (Schedule schedule : {Schedule::Serial, Schedule::Parallel})
      for (const Item& i : items_of(parsed(f, schedule))) EXPECT_FALSE(has_currency(i.name)) << f << ": '" << i.name << "'";
}

// Kana in a name: hiragana or katakana (E3 81 80..E3 83 BF), e.g. ご飯もの.
bool has_kana(const std::string& s) {
  for (std::size_t i = 0; i + 2 < s.size(); ++i) {
    const auto a = static_cast<unsigned char>(s[i]), b = static_cast<unsigned char>(s[i + 1]);
    if (a == 0xE3 && b >= 0x81 && b <= 0x83) return true;
  }
  return false;
}

TEST(MenuAccuracy, ChineseMenusKeepChineseCategoryNames) {
  for (const auto& f : fixtures()) {
    if (language_of(f) != "zh") continue;
    std::set<std::string> truth;
    for (const Item& t : ground_truth(f)) truth.insert(t.category);
    for (Schedule schedule : {Schedule::Serial, Schedule::Parallel})
      for (const json& c : parsed(f, schedule)["categories"]) {
        const std::string name = c.value("name", "");
        EXPECT_FALSE(has_kana(name)) << f << ": " << name;
        EXPECT_NE(name, "麺類") << f << ": the Japanese form of 麵類";
      }
  }
  // The emulator's own fallback for items before any heading keeps the menu's script too.
  const json zh = parse(json::array({"牛肉麵 NT$180", "滷肉飯 NT$45"}));
  ASSERT_EQ(zh["categories"].size(), 2u);
  EXPECT_EQ(zh["categories"][0]["name"], "麵類");
  EXPECT_EQ(zh["categories"][1]["name"], "飯類");
  const json ja = parse(json::array({"醤油ラーメン ¥850", "親子丼 ¥900"}));
  ASSERT_EQ(ja["categories"].size(), 2u);
  EXPECT_EQ(ja["categories"][0]["name"], "麺類");
  EXPECT_EQ(ja["categories"][1]["name"], "ご飯もの");
}

}  // namespace

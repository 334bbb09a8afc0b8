// Local OCR (libtesseract, jpn+chi_tra+eng) reads the menu fixtures, serial and banded-parallel.
// Tesseract is not perfect on CJK (it misreads a few characters, e.g. "¥" as "\"): the test asserts
// that at least 80 % of the item names are found verbatim in the OCR lines, and that the lines of
// the parallel variant come in menu order.
#include "plugins/menu/common/tesseract_reader.h"
#include "plugins/menu/common/menu.h"
#include "tests/pipelines/fake_host.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using pipelined::plugins::Schedule;
namespace menu = pipelined::plugins::menu;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const menu::TesseractReader& reader() {
  static const menu::TesseractReader r{menu::TesseractConfig{}};
  return r;
}

struct Score {
  std::size_t items = 0, found = 0;
  bool in_order = true;
};

// Item names of the sidecar found in the OCR lines; order: each found at a line after the previous.
Score score(const std::string& fixture, const json& lines) {
  std::istringstream sidecar(read_file(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus" / (fixture + ".txt")));
  Score s;
  std::size_t last = 0;
  for (std::string l; std::getline(sidecar, l);) {
    if (!menu::looks_like_item(l)) continue;
    ++s.items;
    const std::string name = menu::split_price(l).first;
    // Look after the previous find first: a name can be part of an earlier one (酸辣湯 / 酸辣湯麵).
    auto find_from = [&](std::size_t from) {
      for (std::size_t i = from; i < lines.size(); ++i)
        if (lines[i].get<std::string>().find(name) != std::string::npos) return i;
      return lines.size();
    };
    std::size_t at = find_from(last);
    if (at == lines.size()) {
      at = find_from(0);
      if (at != lines.size()) s.in_order = false;
    }
    if (at != lines.size()) {
      ++s.found;
      last = at;
    }
  }
  return s;
}

class TesseractFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(TesseractFixtures, ReadsMostItemNamesSeriallyAndInBands) {
  const std::string fixture = GetParam();
  const std::string image = read_file(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus" / (fixture + ".png"));
  for (Schedule schedule : {Schedule::Serial, Schedule::Parallel}) {
    fake::Run run([](const fake::Call&) { return fake::Reply{}; });
    const auto start = std::chrono::steady_clock::now();
    json out = reader().read(image, run.ctx, schedule);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    const Score s = score(fixture, out["lines"]);
    const char* name = schedule == Schedule::Serial ? "serial" : "parallel";
    RecordProperty(std::string(name) + "_found", std::to_string(s.found) + "/" + std::to_string(s.items));
    std::cout << fixture << " " << name << ": " << s.found << "/" << s.items << " item names, " << ms << " ms\n";
    EXPECT_GE(s.found * 100, s.items * 80) << name << ": " << s.found << " of " << s.items << " item names\n" << out.dump(1);
    EXPECT_TRUE(s.in_order) << name;
    for (const json& l : out["lines"]) EXPECT_FALSE(l.get<std::string>().empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Menus, TesseractFixtures,
                         ::testing::Values("menu_ja_1", "menu_ja_12", "menu_ja_40", "menu_ja_60", "menu_zh_8", "menu_zh_20",
                                           "menu_zh_40", "menu_zh_60"));

// The benchmark menu reads the same whole or in bands (any band count): the e2e test that compares
// every combination of variants relies on it.
TEST(Tesseract, BenchmarkMenuReadsTheSameWholeAndInBands) {
  const std::string image = read_file(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus/menu_ja_40.png");
  fake::Run run([](const fake::Call&) { return fake::Reply{}; });
  const json whole = reader().read(image, run.ctx, Schedule::Serial);
  for (int bands : {2, 4, 8}) {
    menu::TesseractConfig config;
    config.max_bands = bands;
    EXPECT_EQ(menu::TesseractReader(config).read(image, run.ctx, Schedule::Parallel), whole) << bands << " bands";
  }
}

// Engines are a bounded pool shared by every request: with one engine, four concurrent banded
// reads wait their turn for it and read what one read alone does; a read whose request is cancelled
// while it waits gives up with the timeout class instead of waiting on.
TEST(Tesseract, ConcurrentReadsShareABoundedEnginePool) {
  const std::string image = read_file(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus/menu_ja_12.png");
  fake::Run alone_run([](const fake::Call&) { return fake::Reply{}; });
  const json alone = reader().read(image, alone_run.ctx, Schedule::Serial);
  menu::TesseractConfig config;
  config.max_bands = 4;
  config.max_engines = 1;
  config.preload_engines = 1;
  const menu::TesseractReader one_engine(config);
  std::vector<json> outs(4);
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < outs.size(); ++i)
    readers.emplace_back([&, i] {
      fake::Run run([](const fake::Call&) { return fake::Reply{}; });
      outs[i] = one_engine.read(image, run.ctx, Schedule::Parallel);
    });
  for (auto& t : readers) t.join();
  for (const json& out : outs) EXPECT_EQ(out, alone);

  const std::string long_menu = read_file(fs::path(PIPELINED_SOURCE_DIR) / "tests/fixtures/menus/menu_ja_60.png");
  std::thread busy([&] {
    fake::Run run([](const fake::Call&) { return fake::Reply{}; });
    one_engine.read(long_menu, run.ctx, Schedule::Serial);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the one engine is in use
  fake::Run cancelled([](const fake::Call&) { return fake::Reply{}; });
  cancelled.raw.cancelled = true;
  try {
    one_engine.read(image, cancelled.ctx, Schedule::Serial);
    ADD_FAILURE() << "a cancelled read returned";
  } catch (const pipelined::sdk::StageError& e) {
    EXPECT_EQ(e.error_class(), "timeout");
  }
  busy.join();
}

TEST(Tesseract, NotAnImageIsInvalidInput) {
  fake::Run run([](const fake::Call&) { return fake::Reply{}; });
  try {
    reader().read("definitely not an image", run.ctx, Schedule::Parallel);
    FAIL();
  } catch (const pipelined::sdk::StageError& e) {
    EXPECT_EQ(e.error_class(), "invalid_input");
  }
}

TEST(Tesseract, MissingLanguageDataFailsAtLoad) {
  menu::TesseractConfig config;
  config.languages = "xxx_no_such_language";
  EXPECT_THROW(menu::TesseractReader{config}, std::runtime_error);
}

}  // namespace

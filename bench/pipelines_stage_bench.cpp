// Stage-level model of the reference pipelines' scheduling, runnable without the daemon: the real
// stage code (plugins/menu/common, plugins/medicine/common, local Tesseract OCR, the SQLite drug
// database) on the fake host of tests/pipelines, whose provider answers after provider-sim's latency
// model and which caps requests in flight per provider like the outbound client. Stages are chained
// as the engine chains them (describe's items stream into the images stage for the parallel arm;
// the drug query and OCR overlap for the parallel medicine arm). The end-to-end daemon figures come
// from bench/pipelines_bench.cpp.
//
//   build/bench/pipelines_stage_bench [--time-scale 1] [--openai-in-flight 8] [--menu menu_ja_40]
#include "plugins/medicine/common/medicine.h"
#include "plugins/menu/common/menu.h"
#include "plugins/menu/common/tesseract_reader.h"
#include "tests/pipelines/fake_host.h"
#include "tests/pipelines/fake_providers.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <thread>

namespace {

using json = nlohmann::json;
using pipelined::plugins::Schedule;
namespace menu = pipelined::plugins::menu;
namespace medicine = pipelined::plugins::medicine;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct World {
  double scale;
  std::shared_ptr<fake::Limiter> limiter;
  fake::Provider provider() const {
    return [s = scale](const fake::Call& c) {
      fake::Reply r = fake::provider_world(c);
      r.delay_ms = fake::modelled_latency_ms(c, s);
      return r;
    };
  }
  std::unique_ptr<fake::Run> run() const {
    auto r = std::make_unique<fake::Run>(provider());
    r->raw.limiter = limiter;
    return r;
  }
};

struct Times {
  double total = 0;
  std::map<std::string, double> stage;
  std::size_t items = 0;
};

Times run_menu(const World& world, const menu::TesseractReader& reader, const std::string& image, Schedule schedule,
               int in_flight) {
  Times t;
  const auto start = Clock::now();
  auto timed = [&](const std::string& stage, auto&& fn) {
    const auto s = Clock::now();
    auto out = fn();
    t.stage[stage] = since(s);
    return out;
  };
  json ocr = timed("ocr", [&] { auto r = world.run(); return reader.read(image, r->ctx, schedule); });
  menu::CategorizeConfig cc;
  cc.max_in_flight = static_cast<std::size_t>(in_flight);
  json categorized = timed("categorize", [&] { auto r = world.run(); return fake::wait(menu::categorize(ocr, r->ctx, cc, schedule)); });
  json translated = timed("translate", [&] { auto r = world.run(); return fake::wait(menu::translate(categorized, r->ctx, {}, schedule)); });
  menu::DescribeConfig dc;
  dc.max_in_flight = static_cast<std::size_t>(in_flight);
  auto describe_run = world.run();
  auto images_run = world.run();
  images_run->raw.input_done = false;
  json final;
  const auto s = Clock::now();
  if (schedule == Schedule::Parallel) {
    // `input: stream`: the images stage runs beside describe and gets each item as it is emitted.
    describe_run->raw.on_emit = [&](const json& item) { images_run->raw.push_item(item); };
    std::thread images([&] { final = fake::wait(menu::images(images_run->ctx, {}, schedule)); });
    fake::wait(menu::describe(translated, describe_run->ctx, dc, schedule));
    t.stage["describe"] = since(s);
    images_run->raw.end_items();
    images.join();
  } else {
    fake::wait(menu::describe(translated, describe_run->ctx, dc, schedule));
    t.stage["describe"] = since(s);
    for (const json& item : describe_run->raw.emitted) images_run->raw.push_item(item);
    images_run->raw.end_items();
    final = fake::wait(menu::images(images_run->ctx, {}, schedule));
  }
  t.stage["images"] = since(s) - (schedule == Schedule::Serial ? t.stage["describe"] : 0);
  t.total = since(start);
  for (const json& c : final["categories"]) t.items += c["items"].size();
  return t;
}

Times run_medicine(const World& world, const medicine::DrugsConfig& drugs_config, const pipelined::sdk::Payload& input,
                   Schedule schedule) {
  Times t;
  const auto start = Clock::now();
  json drugs, ocr;
  auto do_drugs = [&] {
    const auto s = Clock::now();
    drugs = medicine::query_drugs(drugs_config);
    t.stage["drugs"] = since(s);
  };
  auto do_ocr = [&] {
    const auto s = Clock::now();
    auto r = world.run();
    ocr = fake::wait(medicine::ocr(input, r->ctx, {}));
    t.stage["ocr"] = since(s);
  };
  if (schedule == Schedule::Parallel) {
    std::thread d(do_drugs);
    do_ocr();
    d.join();
  } else {
    do_drugs();
    do_ocr();
  }
  const auto s = Clock::now();
  auto r = world.run();
  fake::wait(medicine::analyze({{"drugs", drugs}, {"ocr", ocr}}, r->ctx, {}));
  t.stage["analysis"] = since(s);
  t.total = since(start);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  double scale = 1;
  int in_flight = 8;
  std::string fixture = "menu_ja_40", command = argv[0];
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    command += " " + a + " " + v;
    if (a == "--time-scale") scale = std::stod(v);
    else if (a == "--openai-in-flight") in_flight = std::stoi(v);
    else if (a == "--menu") fixture = v;
    else {
      std::cerr << "usage: " << argv[0] << " [--time-scale S] [--openai-in-flight N] [--menu FIXTURE]\n";
      return 2;
    }
  }
  World world{scale, std::make_shared<fake::Limiter>(std::map<std::string, int>{{"openai", in_flight}, {"google_translate", 8}, {"gemini", 4}})};
  const menu::TesseractReader reader{menu::TesseractConfig{}};
  const std::string image = fake::detail::read_file(std::string(PIPELINED_SOURCE_DIR) + "/tests/fixtures/menus/" + fixture + ".png");
  run_menu(World{0, world.limiter}, reader, image, Schedule::Parallel, in_flight);  // warm-up: Tesseract engines

  Times serial = run_menu(world, reader, image, Schedule::Serial, in_flight);
  Times parallel = run_menu(world, reader, image, Schedule::Parallel, in_flight);
  const double t_image = 6.0 * scale;
  const double bound = parallel.stage["ocr"] + parallel.stage["categorize"] + parallel.stage["translate"] + parallel.stage["describe"] +
                       std::ceil(static_cast<double>(parallel.items) / in_flight) * t_image;
  std::printf("## menu %s (%zu items), latency model x%g, openai in flight %d\n\n", fixture.c_str(), parallel.items, scale, in_flight);
  std::printf("| arm | total s | ocr | categorize | translate | describe | images |\n|---|---|---|---|---|---|---|\n");
  for (auto [name, t] : {std::pair<const char*, Times*>{"serial", &serial}, {"parallel", &parallel}})
    std::printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name, t->total, t->stage["ocr"], t->stage["categorize"],
                t->stage["translate"], t->stage["describe"], t->stage["images"]);
  std::printf("| bound | %.2f | | | | | %.0f x %.1f s |\n\n", bound, std::ceil(static_cast<double>(parallel.items) / in_flight), t_image);
  std::printf("speed-up %.2fx, parallel / bound %.3f\n\n", serial.total / parallel.total, parallel.total / bound);

  medicine::DrugsConfig dc;
  dc.database = std::string(PIPELINED_SOURCE_DIR) + "/data/drugs.db";
  std::printf("## medicine, latency model x%g\n\n| images | serial s | parallel s | overlap bound s | drugs | ocr | analysis |\n|---|---|---|---|---|---|---|\n", scale);
  for (int n : {1, 3}) {
    pipelined::sdk::Payload input;
    for (int i = 1; i <= n; ++i) {
      const std::string name = "medicine_" + std::to_string(i) + ".png";
      input.attachments.push_back({name, "image/png", std::make_shared<const std::string>(fake::detail::read_file(
                                                         std::string(PIPELINED_SOURCE_DIR) + "/tests/fixtures/medicine/" + name))});
    }
    Times s = run_medicine(world, dc, input, Schedule::Serial);
    Times p = run_medicine(world, dc, input, Schedule::Parallel);
    std::printf("| %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", n, s.total, p.total,
                std::max(p.stage["drugs"], p.stage["ocr"]) + p.stage["analysis"], p.stage["drugs"], p.stage["ocr"], p.stage["analysis"]);
  }
  std::printf("\ncommand: %s\n", command.c_str());
  return 0;
}

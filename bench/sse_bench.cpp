// Server-sent events: how soon a client sees the first item of a menu versus when the whole answer
// is there. The pipelined binary on configs/default.yaml with every menu stage on its parallel
// variant, provider-sim at realistic latency, POST /translate with Accept: text/event-stream.
// Also how long after an image's answer left provider-sim its item event reached the client: the
// sim's --answer-log has each answer's CLOCK_MONOTONIC time, which steady_clock here reads too.
//   build/bench/sse_bench [--time-scale 1] [--runs 3] [--menu menu_ja_40]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <unistd.h>

#include "tests/server/menu_daemon.h"
#include "tests/server/sse_client.h"
#include "bench/stats.h"

namespace {

using pipelined::bench::median;
using pipelined::bench::percentile;

using pipelined::testing::MenuDaemon;
using pipelined::testing::SseEvent;
using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// provider-sim's answer log (provider-sim/answer_log.h): every time each image URL was answered.
std::map<std::string, std::vector<Clock::time_point>> image_answers(const std::string& path) {
  std::map<std::string, std::vector<Clock::time_point>> at;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    long long ns = 0;
    std::string endpoint, url;
    int status = 0;
    fields >> ns >> endpoint >> status;
    while (fields >> url) at[url].push_back(Clock::time_point(std::chrono::nanoseconds(ns)));
  }
  return at;
}

// The menu pipeline's stable variants set to parallel: every request runs all-parallel.
void all_parallel(std::string& yaml) {
  const std::size_t menu = yaml.find("\n  menu:\n"), medicine = yaml.find("\n  medicine:\n");
  std::string part = yaml.substr(menu, medicine - menu);
  harness::replace_all(part, "stable: serial", "stable: parallel");
  yaml.replace(menu, medicine - menu, part);
}

}  // namespace

int main(int argc, char** argv) {
  std::string time_scale = "1", menu = "menu_ja_40";
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--time-scale")
      time_scale = argv[++i];
    else if (i + 1 < argc && a == "--runs")
      runs = std::stoi(argv[++i]);
    else if (i + 1 < argc && a == "--menu")
      menu = argv[++i];
    else {
      std::cerr << "usage: " << argv[0] << " [--time-scale S] [--runs N] [--menu FIXTURE]\n";
      return 2;
    }
  }
  const std::string answer_log = (std::filesystem::temp_directory_path() / ("sse_bench_answers." + std::to_string(getpid()))).string();
  MenuDaemon daemon({"--time-scale", time_scale, "--seed", "1", "--answer-log", answer_log}, {}, "", all_parallel);
  const auto [body, type] = pipelined::testing::multipart_file("file", MenuDaemon::menu(menu));

  std::fprintf(stderr, "warm-up (Tesseract engines, connections)\n");
  pipelined::testing::post_events(daemon.port(), "/translate", body, type);

  std::vector<double> first_stage, first_item, first_description, first_image, total;
  std::size_t items = 0, item_events = 0;
  std::vector<std::pair<std::string, Clock::time_point>> image_events;  // image URL, when its event arrived
  for (int r = 0; r < runs; ++r) {
    const auto start = Clock::now();
    std::optional<Clock::time_point> stage_at, item_at, description_at, image_at;
    item_events = 0;
    const auto s = pipelined::testing::post_events(daemon.port(), "/translate", body, type, {}, [&](const SseEvent& e) {
      if (e.name == "stage" && !stage_at) stage_at = e.at;
      if (e.name == "item") {
        ++item_events;
        if (!item_at) item_at = e.at;
        if (!description_at && e.data["item"].contains("description")) description_at = e.at;
        if (e.data["item"].contains("image_url")) {
          if (!image_at) image_at = e.at;
          if (e.data["item"]["image_url"].is_string()) image_events.emplace_back(e.data["item"]["image_url"].get<std::string>(), e.at);
        }
      }
      return true;
    });
    if (s.events.empty() || s.events.back().name != "result" || !item_at || !stage_at || !description_at || !image_at) {
      std::cerr << "run " << r + 1 << ": no result or no item events (" << s.events.size() << " events)\n";
      return 1;
    }
    items = 0;
    for (const auto& c : s.events.back().data["categories"]) items += c["items"].size();
    first_stage.push_back(seconds(*stage_at - start));
    first_item.push_back(seconds(*item_at - start));
    first_description.push_back(seconds(*description_at - start));
    first_image.push_back(seconds(*image_at - start));
    total.push_back(seconds(s.events.back().at - start));
    std::fprintf(stderr, "  run %d: first item %.2f s, result %.2f s\n", r + 1, first_item.back(), total.back());
  }
  std::printf("## /translate over server-sent events, %s (%zu items), all parallel, provider-sim --time-scale %s, %d runs\n\n",
              menu.c_str(), items, time_scale.c_str(), runs);
  std::printf("| event | median s after the request | share of total |\n|---|---|---|\n");
  const double t = median(total);
  std::printf("| first stage (ocr) | %.2f | %.0f %% |\n", median(first_stage), 100 * median(first_stage) / t);
  std::printf("| first item (translated) | %.2f | %.0f %% |\n", median(first_item), 100 * median(first_item) / t);
  std::printf("| first item with its description | %.2f | %.0f %% |\n", median(first_description), 100 * median(first_description) / t);
  std::printf("| first item with its image | %.2f | %.0f %% |\n", median(first_image), 100 * median(first_image) / t);
  std::printf("| result | %.2f | 100 %% |\n\n%zu item events per request (translate, describe, images: one each per item)\n", t,
              item_events);

  // Each image event against the latest answer of its URL before it (the runs ask for the same images).
  const auto answers = image_answers(answer_log);
  std::filesystem::remove(answer_log);
  std::vector<double> delay_ms;
  for (const auto& [url, arrived] : image_events) {
    const auto it = answers.find(url);
    if (it == answers.end()) continue;
    std::optional<Clock::time_point> answered;
    for (const auto& a : it->second)
      if (a <= arrived && (!answered || a > *answered)) answered = a;
    if (answered) delay_ms.push_back(1000 * seconds(arrived - *answered));
  }
  if (delay_ms.size() != image_events.size()) {
    std::cerr << image_events.size() - delay_ms.size() << " of " << image_events.size() << " image events have no answer in the log\n";
    return 1;
  }
  std::sort(delay_ms.begin(), delay_ms.end());
  const auto within = std::count_if(delay_ms.begin(), delay_ms.end(), [](double ms) { return ms <= 50; });
  std::printf(
      "\nimage event after its image's answer left provider-sim, over %zu image events: median %.1f ms, p90 %.1f ms, max %.1f ms; "
      "%zd within 50 ms (goal: all)\n",
      delay_ms.size(), median(delay_ms), percentile(delay_ms, 0.9), delay_ms.back(), static_cast<std::ptrdiff_t>(within));
  return 0;
}

// Reference pipelines benchmark: /translate (menu) and /analyze (medicine) through the daemon's
// core in-process (tests/pipelines/harness.h) against provider-sim at realistic latency.
//
//   build/bench/pipelines_bench [--time-scale 1] [--runs 3] [--openai-in-flight N] [--menu menu_ja_40]
//                               [--worker-threads N] [--concurrent N] [--compare-isolation]
//                               [--compare-queue-order [--queue-requests 16]]
//
// Menu: all-serial vs all-parallel end to end, and the critical-path bound of the parallel pipeline
// given the in-flight limits:
//   bound = ocr + categorize + translate + describe (the parallel run's stage times: each of those
//           stages is one round of concurrent requests or local work)
//         + ceil(items / openai.max_in_flight) x one image generation (measured alone)
// (images can only start when the first description chunk is back and at most max_in_flight run at
// once). Medicine with 1 and 3 images: serial vs parallel, and the overlap bound
// max(drugs, ocr) + analysis. Memory: the request's peak heap bytes (engine accounting).
// Isolation (--compare-isolation): the menu all-parallel with its non-stable variants in runner
// processes (isolation: process, as configs/default.yaml has them) against the same variants loaded
// in-process, runs of the two interleaved.
// Queue order (--compare-queue-order, instead of the rest): --queue-requests N (16) /translate of
// menu_ja_12, all parallel, started at once, with the providers' waiting calls started oldest request
// first (queue_order: request) and in the order they were sent (arrival), rounds of the two
// alternating in one run; p50 / p90 / max of the N latencies over all rounds. Arrival order shares
// the provider slots among all N requests; request order serves the oldest first, which should bring
// the median down at the same throughput (the max).
// requests_per_minute is divided by the time scale, like the latencies. Each batch's median stage
// times go to stderr: OCR is local CPU work, which the queue order does not reach.
// Concurrency: N /analyze requests (parallel variants, one image) at once against one alone, on the
// pool of --worker-threads: runs waiting on providers hold no pool thread, so N at once take about
// as long as one, as far as the providers' in-flight limits allow (gemini: 4). A run that held a
// pool thread for each stage would need at least N x (one alone) / worker threads.
#include "tests/pipelines/harness.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <thread>
#include "bench/stats.h"

namespace {

using pipelined::bench::median;
using pipelined::bench::percentile;

using harness::json;
using pipelined::engine::RunResult;

double seconds(std::chrono::microseconds d) { return std::chrono::duration<double>(d).count(); }

double stage_s(const RunResult& r, const std::string& stage) {
  const auto* s = harness::stage_record(r, stage);
  return s ? seconds(s->duration) : 0;
}

struct Arm {
  std::vector<double> wall_s, peak_mb;
  std::vector<RunResult> results;
};

Arm measure(harness::Stack& stack, const std::string& pipeline, const std::vector<pipelined::sdk::Attachment>& files,
            const std::string& variant, int runs) {
  Arm arm;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    RunResult r = stack.run(pipeline, files, stack.all(pipeline, variant));
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!r.ok) {
      std::cerr << pipeline << " " << variant << " run failed: " << r.error_class << ": " << r.error_message << "\n";
      std::exit(1);
    }
    std::fprintf(stderr, "  %s %s run %d: %.2f s\n", pipeline.c_str(), variant.c_str(), i + 1, wall);
    arm.wall_s.push_back(wall);
    arm.peak_mb.push_back(static_cast<double>(r.peak_bytes) / (1024.0 * 1024.0));
    arm.results.push_back(std::move(r));
  }
  return arm;
}

double median_stage(const Arm& arm, const std::string& stage) {
  std::vector<double> v;
  for (const auto& r : arm.results) v.push_back(stage_s(r, stage));
  return median(v);
}

using QueueOrder = pipelined::config::ProviderConfig::QueueOrder;

// `n` requests of `pipeline` started at once, every provider's queue in `order`; their latencies.
std::vector<double> concurrent_latencies(harness::Stack& stack, const std::string& pipeline, const pipelined::sdk::Attachment& file, int n,
                                         QueueOrder order) {
  auto providers = stack.config().providers;
  for (auto& [name, p] : providers) p.queue_order = order;
  stack.outbound().update_providers(providers);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // applied on the I/O thread's next turn
  std::vector<double> latency(static_cast<std::size_t>(n));
  std::vector<RunResult> results(static_cast<std::size_t>(n));
  std::vector<std::thread> clients;
  std::atomic<int> failed{0};
  for (int c = 0; c < n; ++c)
    clients.emplace_back([&, c] {
      const auto start = std::chrono::steady_clock::now();
      RunResult r = stack.run(pipeline, {file}, stack.all(pipeline, "parallel"));
      latency[static_cast<std::size_t>(c)] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!r.ok) {
        std::fprintf(stderr, "  run failed: %s: %s\n", r.error_class.c_str(), r.error_message.c_str());
        ++failed;
      }
      results[static_cast<std::size_t>(c)] = std::move(r);
    });
  for (auto& t : clients) t.join();
  // Where the time went: a stage that waits on the CPU (OCR) rather than on provider slots is not
  // helped by the queue order.
  std::fprintf(stderr, "   stages (median s):");
  for (const char* stage : {"ocr", "categorize", "translate", "describe", "images"}) {
    std::vector<double> v;
    for (const auto& r : results) v.push_back(stage_s(r, stage));
    std::fprintf(stderr, " %s %.2f", stage, median(v));
  }
  std::fprintf(stderr, "\n");
  if (failed > 0) {
    std::cerr << failed << " concurrent " << pipeline << " runs failed\n";
    std::exit(1);
  }
  return latency;
}

}  // namespace

int main(int argc, char** argv) {
  std::string time_scale = "1", menu = "menu_ja_40";
  int runs = 3, openai_in_flight = 0, worker_threads = 0, concurrent = 8;
  bool compare_isolation = false, compare_queue_order = false;
  int queue_requests = 16;
  std::string command = argv[0];
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    command += " " + a;
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      command += std::string(" ") + argv[i + 1];
      return argv[++i];
    };
    if (a == "--time-scale") time_scale = value();
    else if (a == "--runs") runs = std::stoi(value());
    else if (a == "--openai-in-flight") openai_in_flight = std::stoi(value());
    else if (a == "--menu") menu = value();
    else if (a == "--worker-threads") worker_threads = std::stoi(value());
    else if (a == "--concurrent") concurrent = std::stoi(value());
    else if (a == "--compare-isolation") compare_isolation = true;
    else if (a == "--compare-queue-order") compare_queue_order = true;
    else if (a == "--queue-requests") queue_requests = std::stoi(value());
    else {
      std::cerr << "usage: " << argv[0] << " [--time-scale S] [--runs N] [--openai-in-flight N] [--menu FIXTURE]"
                   " [--worker-threads N] [--concurrent N] [--compare-isolation] [--compare-queue-order] [--queue-requests N]\n";
      return 2;
    }
  }

  harness::ProviderSim sim({"--time-scale", time_scale, "--seed", "1"});
  const auto state = harness::fs::temp_directory_path() / ("pipelines-bench-" + std::to_string(getpid()));
  harness::fs::create_directories(state);
  auto config = harness::default_config(sim, state);
  if (openai_in_flight > 0) {
    config->providers["openai"].max_in_flight = openai_in_flight;
    for (auto& p : config->pipelines)
      for (auto& s : p.stages)
        for (auto& v : s.variants)
          if (v.config.contains("max_in_flight")) v.config["max_in_flight"] = openai_in_flight;
  }
  if (worker_threads > 0) config->worker_threads = worker_threads;
  // The sim's --time-scale compresses the providers' latencies; their per-minute limits are
  // compressed alike, or the second batch of a round would meet a bucket the first one emptied
  // (16 menus take some 500 openai calls against 600 a minute) and the orders would not compare.
  if (compare_queue_order && std::stod(time_scale) > 0)
    for (auto& [name, p] : config->providers) p.requests_per_minute /= std::stod(time_scale);
  const int in_flight = config->providers.at("openai").max_in_flight;
  harness::Stack stack(config);

  const auto menu_image = harness::fixture("menus/" + menu + ".png");
  const std::vector<pipelined::sdk::Attachment> one = {harness::fixture("medicine/medicine_1.png")};
  const std::vector<pipelined::sdk::Attachment> three = {harness::fixture("medicine/medicine_1.png"),
                                                         harness::fixture("medicine/medicine_2.png"),
                                                         harness::fixture("medicine/medicine_3.png")};

  std::fprintf(stderr, "warm-up (Tesseract engines, connections)\n");
  measure(stack, "menu", {harness::fixture("menus/menu_ja_12.png")}, "parallel", 1);
  measure(stack, "medicine", one, "parallel", 1);

  if (compare_queue_order) {
    const auto fixture = harness::fixture("menus/menu_ja_12.png");
    std::vector<double> alone_s, by_request, by_arrival;
    const auto calls_before = stack.outbound().stats()["openai"].requests;
    for (int i = 0; i < runs; ++i) {
      alone_s.push_back(measure(stack, "menu", {fixture}, "parallel", 1).wall_s.front());
      // Alternating which order goes first, so neither always meets the other's leftovers (the
      // requests-per-minute bucket, warm connections).
      for (const QueueOrder order :
           (i % 2 == 0) ? std::vector{QueueOrder::Request, QueueOrder::Arrival} : std::vector{QueueOrder::Arrival, QueueOrder::Request}) {
        auto l = concurrent_latencies(stack, "menu", fixture, queue_requests, order);
        std::fprintf(stderr, "  round %d, %s order: p50 %.2f s, max %.2f s\n", i + 1, order == QueueOrder::Request ? "request" : "arrival",
                     percentile(l, 0.5), percentile(l, 1));
        auto& all = order == QueueOrder::Request ? by_request : by_arrival;
        all.insert(all.end(), l.begin(), l.end());
      }
    }
    std::printf(
        "## queue order: %d concurrent /translate of menu_ja_12, all parallel, provider-sim --time-scale %s, "
        "openai max_in_flight %d, %d rounds\n\n",
        queue_requests, time_scale.c_str(), in_flight, runs);
    std::printf("| queue_order | p50 s | p90 s | max s | requests |\n|---|---|---|---|---|\n");
    for (const auto& [name, l] : {std::pair<const char*, std::vector<double>*>{"request", &by_request}, {"arrival", &by_arrival}})
      std::printf("| %s | %.2f | %.2f | %.2f | %zu |\n", name, percentile(*l, 0.5), percentile(*l, 0.9), percentile(*l, 1), l->size());
    std::printf(
        "\none alone (median of %d): %.2f s; request / arrival: p50 %.2f, p90 %.2f, max %.2f "
        "(goal: p50 about 0.5, max at most a few percent above 1)\n",
        runs, median(alone_s), percentile(by_request, 0.5) / percentile(by_arrival, 0.5),
        percentile(by_request, 0.9) / percentile(by_arrival, 0.9), percentile(by_request, 1) / percentile(by_arrival, 1));
    const auto calls = stack.outbound().stats()["openai"].requests - calls_before;
    std::printf("openai calls per request: %.1f\n", static_cast<double>(calls) / (runs * (2.0 * queue_requests + 1)));
    std::printf("\ncommand: %s\n", command.c_str());
    harness::fs::remove_all(state);
    return 0;
  }

  // One image generation alone, the unit of the images stage's critical path.
  std::vector<double> image_s;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    harness::http("POST", sim.url() + "/v1/images/generations", nullptr,
                  json{{"model", "dall-e-3"}, {"prompt", "bench " + std::to_string(i)}, {"n", 1}, {"size", "1024x1024"}}.dump(),
                  120000);
    image_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double t_image = median(image_s);

  std::fprintf(stderr, "menu %s\n", menu.c_str());
  Arm serial = measure(stack, "menu", {menu_image}, "serial", std::max(1, runs / 3));
  Arm parallel = measure(stack, "menu", {menu_image}, "parallel", runs);
  std::size_t items = 0;
  for (const json& c : parallel.results.front().outputs.at("images").json.at("categories")) items += c.at("items").size();
  const double before_images = median_stage(parallel, "ocr") + median_stage(parallel, "categorize") +
                               median_stage(parallel, "translate") + median_stage(parallel, "describe");
  const double bound = before_images + std::ceil(static_cast<double>(items) / in_flight) * t_image;
  const double s_serial = median(serial.wall_s), s_parallel = median(parallel.wall_s);

  std::printf("## /translate, %s (%zu items), provider-sim --time-scale %s, openai max_in_flight %d\n\n", menu.c_str(), items,
              time_scale.c_str(), in_flight);
  std::printf("| arm | median s | runs | peak heap MB (median) |\n|---|---|---|---|\n");
  std::printf("| all serial | %.2f | %zu | %.1f |\n", s_serial, serial.wall_s.size(), median(serial.peak_mb));
  std::printf("| all parallel | %.2f | %zu | %.1f |\n", s_parallel, parallel.wall_s.size(), median(parallel.peak_mb));
  std::printf("| critical-path bound | %.2f | | |\n\n", bound);
  std::printf("speed-up %.2fx; parallel / bound = %.2f; one image %.2f s; parallel stages (median s): ocr %.2f, categorize %.2f, "
              "translate %.2f, describe %.2f, images %.2f\n\n",
              s_serial / s_parallel, s_parallel / bound, t_image, median_stage(parallel, "ocr"), median_stage(parallel, "categorize"),
              median_stage(parallel, "translate"), median_stage(parallel, "describe"), median_stage(parallel, "images"));
  std::printf("serial stages (median s): ocr %.2f, categorize %.2f, translate %.2f, describe %.2f, images %.2f\n\n",
              median_stage(serial, "ocr"), median_stage(serial, "categorize"), median_stage(serial, "translate"),
              median_stage(serial, "describe"), median_stage(serial, "images"));

  std::printf("## /analyze, provider-sim --time-scale %s\n\n", time_scale.c_str());
  std::printf("| images | serial s | parallel s | overlap bound s | drugs s | ocr s | analysis s | peak heap MB serial / parallel |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const auto* files : {&one, &three}) {
    Arm ms = measure(stack, "medicine", *files, "serial", runs);
    Arm mp = measure(stack, "medicine", *files, "parallel", runs);
    const double drugs = median_stage(mp, "drugs"), ocr = median_stage(mp, "ocr"), analysis = median_stage(mp, "analysis");
    std::printf("| %zu | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f / %.1f |\n", files->size(), median(ms.wall_s), median(mp.wall_s),
                std::max(drugs, ocr) + analysis, drugs, ocr, analysis, median(ms.peak_mb), median(mp.peak_mb));
  }
  // Concurrency: one request alone, then `concurrent` at once; medians over `runs` rounds.
  std::vector<double> alone_s, together_s;
  for (int i = 0; i < runs; ++i) {
    alone_s.push_back(median(measure(stack, "medicine", one, "parallel", 1).wall_s));
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> clients;
    std::atomic<int> failed{0};
    for (int c = 0; c < concurrent; ++c)
      clients.emplace_back([&] {
        if (!stack.run("medicine", one, stack.all("medicine", "parallel")).ok) ++failed;
      });
    for (auto& t : clients) t.join();
    together_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (failed > 0) {
      std::cerr << failed << " concurrent /analyze runs failed\n";
      return 1;
    }
    std::fprintf(stderr, "  %d at once: %.2f s\n", concurrent, together_s.back());
  }
  const double alone = median(alone_s), together = median(together_s);
  const int threads = stack.config().worker_threads;
  std::printf("\n## /analyze (parallel, 1 image): %d at once on %d worker threads\n\n", concurrent, threads);
  std::printf("| one alone s | %d at once s | ratio | at least, if runs held a pool thread s |\n|---|---|---|---|\n", concurrent);
  std::printf("| %.3f | %.3f | %.2f | %.3f |\n", alone, together, together / alone, concurrent * alone / threads);
  if (compare_isolation) {
    int isolated_variants = 0;
    harness::Stack local(harness::in_process_copy(*config, state / "in-process", &isolated_variants));
    std::vector<double> isolated_s, local_s;
    for (int i = 0; i < runs; ++i) {
      isolated_s.push_back(measure(stack, "menu", {menu_image}, "parallel", 1).wall_s.front());
      local_s.push_back(measure(local, "menu", {menu_image}, "parallel", 1).wall_s.front());
    }
    std::printf("\n## isolation: /translate %s all parallel, %d non-stable variants in runner processes vs in-process\n\n", menu.c_str(),
                isolated_variants);
    std::printf("| variants | median s | runs |\n|---|---|---|\n| isolated | %.3f | %d |\n| in-process | %.3f | %d |\n\n", median(isolated_s),
                runs, median(local_s), runs);
    std::printf("isolated / in-process = %.3f (goal: at most 1.02)\n", median(isolated_s) / median(local_s));
  }
  std::printf("\ncommand: %s\n", command.c_str());
  harness::fs::remove_all(state);
  return 0;
}

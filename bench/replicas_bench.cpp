// Replicas on PostgreSQL (docs/scaling.md): how many request rows a second the writer stores on a
// loopback PostgreSQL (against SQLite on the same machine in the same run), how long a change made
// on one replica takes to be in effect on the two others, and how long the lease takes to move
// when the deciding replica stops. A private PostgreSQL 15 (tests/common/postgres_server.h).
// Run: build/bench/replicas_bench [rows] [changes]
#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "bench/sample_request.h"
#include "rollout/rollout.h"
#include "rollout/store.h"
#include "tests/common/postgres_server.h"
#include "bench/stats.h"

using namespace pipelined;
using Clock = std::chrono::steady_clock;

namespace {

using pipelined::bench::percentile;

rollout::RequestRecord request_row(int i, int stages) {
  rollout::RequestRecord r = bench::sample_request(i);
  r.stages.resize(static_cast<std::size_t>(stages));
  return r;
}
double writer_rows_per_s(const std::string& location, int rows, int stages) {
  rollout::RowWriter writer(location, static_cast<std::size_t>(rows), std::chrono::milliseconds(200));
  writer.start();
  const auto t0 = Clock::now();
  for (int i = 0; i < rows; ++i) writer.push(request_row(i, stages));
  writer.flush();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (writer.counters().written != static_cast<std::uint64_t>(rows)) std::printf("  (only %lu written)\n", writer.counters().written);
  return rows / s;
}

rollout::RolloutSettings replica(const std::string& url, const std::string& id) {
  rollout::RolloutSettings s;
  s.pipelines = {{"p", {{"a", "serial", "parallel", {"serial", "parallel"}}}, false}};
  s.database = url;
  s.replica_id = id;
  s.guardrail_interval = std::chrono::milliseconds(3600000);
  return s;
}

int percent_bp(const rollout::RolloutController& c) {
  const auto status = c.status();
  const auto& r = status.pipelines.at("p").rollout;
  return r ? r->percent_bp : -1;
}

}  // namespace

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 200000;
  const int changes = argc > 2 ? std::atoi(argv[2]) : 100;
  std::printf("command: %s %d %d\n", argv[0], rows, changes);
  testing::PostgresServer pg;
  const std::string sqlite_file = "/tmp/replicas_bench." + std::to_string(::getpid()) + ".db";

  // 1. Writer: request rows queued at once, then written; with two stage rows each (as a two-stage
  // pipeline records) and without.
  for (int stages : {2, 0}) {
    const double postgres = writer_rows_per_s(pg.url(), rows, stages);
    const double sqlite = writer_rows_per_s(sqlite_file, rows, stages);
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((sqlite_file + suffix).c_str());
    std::printf("writer, %d stage rows per request: %.0f request rows/s on PostgreSQL, %.0f on SQLite (ratio %.2f; goal: PostgreSQL >= 50000)\n",
                stages, postgres, sqlite, postgres / sqlite);
  }

  // 2. Propagation: a share changed on replica a, until replicas b and c both serve it.
  std::vector<std::unique_ptr<rollout::RolloutController>> replicas;
  for (const char* id : {"a", "b", "c"}) {
    replicas.push_back(std::make_unique<rollout::RolloutController>(replica(pg.url(), id)));
    replicas.back()->start();
  }
  std::vector<double> ms;
  for (int i = 0; i < changes; ++i) {
    rollout::RolloutChange change;
    change.pipeline = "p";
    change.percent = 10 + i % 2;  // 10 %, 11 %, 10 %, ...: each a change of the same rollout
    const int want = 1000 + (i % 2) * 100;
    const auto t0 = Clock::now();
    replicas[0]->start_or_update(change);
    // status() reads the database too: polled every millisecond, not in a tight loop that would
    // starve the replica threads of their store's lock.
    while (percent_bp(*replicas[1]) != want || percent_bp(*replicas[2]) != want) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf(
      "propagation to both other replicas over %d changes: p50 %.1f ms, p99 %.1f ms, max %.1f ms (goal: p50 <= 100 ms, max <= 1 s)\n",
      changes, percentile(ms, 0.5), percentile(ms, 0.99), *std::max_element(ms.begin(), ms.end()));

  // 3. The deciding replica stops: until another holds the lease (bounded by replica.poll_ms, 1 s).
  std::size_t deciding = 0;
  for (std::size_t i = 0; i < replicas.size(); ++i)
    if (replicas[i]->status().deciding) deciding = i;
  const auto t0 = Clock::now();
  replicas[deciding].reset();
  auto any_decides = [&] {
    for (const auto& r : replicas)
      if (r && r->status().deciding) return true;
    return false;
  };
  while (!any_decides() && Clock::now() - t0 < std::chrono::seconds(10)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::printf("lease moved %.0f ms after the deciding replica stopped (replica.poll_ms 1000)\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  return 0;
}

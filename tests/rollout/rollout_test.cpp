#include "rollout/rollout.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>

#include "rollout/assignment.h"
#include "rollout/compare.h"
#include "rollout/report.h"
#include "rollout/store.h"

namespace fs = std::filesystem;

namespace pipelined::rollout {
namespace {

using nlohmann::json;

class RolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rollout_test." + std::to_string(::getpid()) + "." +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::shared_ptr<const config::Config> config(const std::string& extra = "") {
    auto r = config::load_string("state_directory: " + dir_.string() +
                                 "\nrollout:\n  min_samples_per_arm: 50\n  allow_force_header: true\n" + extra +
                                 "pipelines:\n  p:\n    stages:\n"
                                 "      a: { variants: { serial: { plugin: x }, parallel: { plugin: y } }, stable: serial }\n"
                                 "      b: { needs: [a], variants: { serial: { plugin: x }, parallel: { plugin: y } }, stable: serial }\n"
                                 "  q:\n    stages:\n      c: { variants: { serial: { plugin: x }, parallel: { plugin: y } }, stable: serial }\n");
    EXPECT_TRUE(r.errors.empty()) << (r.errors.empty() ? "" : r.errors[0].to_string());
    return r.config;
  }

  static AdminResponse post(RolloutController& c, const std::string& path, const json& body) {
    return c.handle_admin("POST", path, body.dump());
  }

  static double candidate_share(const RolloutController& c, int keys = 20000) {
    int candidate = 0;
    for (int i = 0; i < keys; ++i) candidate += c.assign("p", "user-" + std::to_string(i)).arm == Arm::Candidate;
    return 100.0 * candidate / keys;
  }

  // A request row on `arm` of the current rollout.
  static RequestRecord row(Arm arm, std::int64_t rollout_id, bool ok, double latency_ms, std::int64_t peak = 1000,
                           const std::string& error_class = "") {
    RequestRecord r;
    r.time_ms = now_ms();
    r.request_id = "r";
    r.pipeline = "p";
    r.rollout_id = rollout_id;
    r.arm = arm;
    r.bucket = 1;
    r.outcome = ok ? "ok" : "error";
    r.http_status = ok ? 200 : 502;
    r.error_class = ok ? "" : error_class;
    r.latency_us = static_cast<std::int64_t>(latency_ms * 1000);
    r.peak_bytes = peak;
    r.rss_bytes = 1 << 20;
    r.stages = {{"a", arm == Arm::Candidate ? "parallel" : "serial", "1.0.0", 0, r.latency_us / 2, "ok", 1, "", peak}};
    return r;
  }

  std::int64_t start_rollout(RolloutController& c, double percent) {
    auto r = post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", percent}, {"actor", "test"}});
    EXPECT_EQ(r.status, 200) << r.body.dump();
    return r.body["rollout"]["id"].get<std::int64_t>();
  }

  fs::path dir_;
};

TEST(Assignment, BucketsAreStableAndInRange) {
  EXPECT_EQ(bucket_of("p#1", "alice"), bucket_of("p#1", "alice"));
  EXPECT_NE(bucket_of("p#1", "alice"), bucket_of("p#2", "alice"));  // a new rollout reshuffles
  for (int i = 0; i < 1000; ++i) {
    const int b = bucket_of("salt", std::to_string(i));
    ASSERT_GE(b, 0);
    ASSERT_LT(b, kBuckets);
  }
  EXPECT_EQ(percent_to_bp(50), 5000);
  EXPECT_EQ(percent_to_bp(12.345), 1235);
  EXPECT_EQ(percent_to_bp(-1), 0);
  EXPECT_EQ(percent_to_bp(100), 10000);
}

TEST_F(RolloutTest, SplitMatchesTheShareWithinOnePoint) {
  RolloutController c(config());
  c.start();
  EXPECT_EQ(c.assign("p", "anyone").arm, Arm::Stable);  // no rollout yet
  for (double target : {10.0, 50.0, 90.0}) {
    ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", target}}).status, 200);
    EXPECT_NEAR(candidate_share(c), target, 1.0) << "at " << target << " %";
  }
  const auto a = c.assign("p", "user-1", std::nullopt);
  if (a.arm == Arm::Candidate) {
    EXPECT_EQ(a.variants.at("a"), "parallel");
    EXPECT_EQ(a.variants.at("b"), "parallel");
  } else {
    EXPECT_TRUE(a.variants.empty());
  }
  EXPECT_EQ(c.assign("q", "user-1").arm, Arm::Stable);  // another pipeline is untouched
  EXPECT_EQ(c.assign("p", "user-1", Arm::Candidate).arm, Arm::Candidate);  // force header allowed here
}

TEST_F(RolloutTest, ForcedArmNeedsTheConfigToAllowIt) {
  auto r = config::load_string("state_directory: " + dir_.string() +
                               "\npipelines:\n  p:\n    stages:\n"
                               "      a: { variants: { serial: { plugin: x }, parallel: { plugin: y } }, stable: serial }\n");
  RolloutController c(r.config);
  c.start();
  ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 0}}).status, 200);
  EXPECT_EQ(c.assign("p", "k", Arm::Candidate).arm, Arm::Stable);
}

TEST_F(RolloutTest, ShareChangesAreMonotonicAndSticky) {
  RolloutController c(config());
  c.start();
  start_rollout(c, 10);
  std::vector<Arm> at10, at50;
  for (int i = 0; i < 5000; ++i) at10.push_back(c.assign("p", "u" + std::to_string(i)).arm);
  ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 50}}).status, 200);
  for (int i = 0; i < 5000; ++i) {
    at50.push_back(c.assign("p", "u" + std::to_string(i)).arm);
    if (at10[i] == Arm::Candidate) {
      ASSERT_EQ(at50[i], Arm::Candidate) << "raising moved a user back to stable";
    }
    ASSERT_EQ(c.assign("p", "u" + std::to_string(i)).arm, at50[i]) << "not sticky";
  }
  ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 20}}).status, 200);
  for (int i = 0; i < 5000; ++i)
    if (at50[i] == Arm::Stable) {
      ASSERT_EQ(c.assign("p", "u" + std::to_string(i)).arm, Arm::Stable) << "lowering moved a user to candidate";
    }
  c.stop();
  // Another controller on the same state (a restarted daemon, or a second one) gives the same arms.
  RolloutController other(config());
  other.start();
  RolloutController& same = other;
  for (int i = 0; i < 2000; ++i) {
    const std::string key = "u" + std::to_string(i);
    const Arm expected = bucket_of("p#" + std::to_string(same.assign("p", key).rollout_id), key) < 2000 ? Arm::Candidate : Arm::Stable;
    ASSERT_EQ(same.assign("p", key).arm, expected);
  }
}

TEST_F(RolloutTest, GuardrailRollsBackAFailingCandidateAndLeavesAHealthyOneAlone) {
  RolloutController c(config());
  c.start();
  std::int64_t id = start_rollout(c, 50);
  // Healthy: always succeeds, 40 % faster, same memory.
  for (int i = 0; i < 200; ++i) {
    c.record(row(Arm::Stable, id, true, 100 + i % 7));
    c.record(row(Arm::Candidate, id, true, 60 + i % 7));
  }
  c.evaluate_guardrails_now();
  auto status = c.handle_admin("GET", "/admin/rollout", "").body;
  EXPECT_EQ(status["pipelines"]["p"]["rollout"]["status"], "live") << status.dump();

  // A new candidate failing 20 % of its requests.
  ASSERT_EQ(post(c, "/admin/rollout/rollback", {{"pipeline", "p"}}).status, 200);
  id = start_rollout(c, 50);
  for (int i = 0; i < 200; ++i) {
    c.record(row(Arm::Stable, id, true, 100));
    c.record(row(Arm::Candidate, id, i % 5 != 0, 60, 1000, "upstream"));
  }
  c.evaluate_guardrails_now();
  status = c.handle_admin("GET", "/admin/rollout", "").body;
  EXPECT_EQ(status["pipelines"]["p"]["rollout"]["status"], "rolled_back");
  const std::string reason = status["pipelines"]["p"]["rollout"]["reason"];
  EXPECT_NE(reason.find("success 80.0 %"), std::string::npos) << reason;
  EXPECT_EQ(status["recent_events"][0]["actor"], "guardrail");
  EXPECT_EQ(c.assign("p", "anyone").arm, Arm::Stable);  // effective at once
}

TEST_F(RolloutTest, GuardrailsCatchSlowAndHungryCandidates) {
  RolloutController c(config());
  c.start();
  std::int64_t id = start_rollout(c, 50);
  for (int i = 0; i < 100; ++i) {
    c.record(row(Arm::Stable, id, true, 100));
    c.record(row(Arm::Candidate, id, true, 95));  // only 5 % faster
  }
  c.evaluate_guardrails_now();
  auto r = c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"];
  EXPECT_EQ(r["status"], "rolled_back");
  EXPECT_NE(r["reason"].get<std::string>().find("time saved 5.0 %"), std::string::npos) << r.dump();

  id = start_rollout(c, 50);
  for (int i = 0; i < 100; ++i) {
    c.record(row(Arm::Stable, id, true, 100, 1000));
    c.record(row(Arm::Candidate, id, true, 50, 1500));  // 50 % more memory
  }
  c.evaluate_guardrails_now();
  r = c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"];
  EXPECT_NE(r["reason"].get<std::string>().find("memory +50.0 %"), std::string::npos) << r.dump();
}

TEST_F(RolloutTest, GuardrailsCatchANewErrorClassAndShadowMismatches) {
  RolloutController c(config());
  c.start();
  std::int64_t id = start_rollout(c, 50);
  // Candidate failures of a class stable never shows: at 4 % of requests they are under
  // max_error_class_spike (5 %) and success is 96 %; at 12 % the spike trips (success with it).
  for (int i = 0; i < 100; ++i) {
    c.record(row(Arm::Stable, id, true, 100));
    c.record(row(Arm::Candidate, id, i % 25 != 0, 50, 1000, "malformed"));  // 4 %: tolerated
  }
  c.evaluate_guardrails_now();
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["status"], "live");
  for (int i = 0; i < 100; ++i) c.record(row(Arm::Candidate, id, i % 10 > 1, 50, 1000, "malformed"));  // 20 % of these
  c.evaluate_guardrails_now();
  auto r = c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"];
  EXPECT_EQ(r["status"], "rolled_back");
  EXPECT_NE(r["reason"].get<std::string>().find("error class 'malformed'"), std::string::npos) << r.dump();

  ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 0}, {"shadow_percent", 50}}).status, 200);
  id = c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["id"];
  for (int i = 0; i < 60; ++i) {
    ShadowRecord s;
    s.time_ms = now_ms();
    s.pipeline = "p";
    s.rollout_id = id;
    s.candidate_ok = true;
    s.matched = i % 10 != 0;  // 10 % mismatches against a 1 % limit
    s.first_difference = s.matched ? "" : "/categories/0/items/3";
    c.record_shadow(s);
  }
  c.evaluate_guardrails_now();
  r = c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"];
  EXPECT_EQ(r["status"], "rolled_back");
  EXPECT_NE(r["reason"].get<std::string>().find("shadow mismatch 10.0 %"), std::string::npos) << r.dump();
}

TEST_F(RolloutTest, StopWritesEveryQueuedRowAndStartEnforcesRetention) {
  {
    RolloutController c(config("metrics:\n  flush_interval_ms: 60000\n"));  // nothing written before stop
    c.start();
    for (int i = 0; i < 1000; ++i) c.record(row(Arm::Stable, 0, true, 10));
    RequestRecord old = row(Arm::Stable, 0, true, 10);
    old.time_ms = now_ms() - 40LL * 86'400'000;  // older than retention_days (30)
    old.request_id = "old";
    c.record(old);
  }  // the destructor stops: every queued row is written
  {
    SQLite::Database db((dir_ / "pipelined.db").string(), SQLite::OPEN_READONLY);
    EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM requests").getInt(), 1001);
    EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM stage_runs").getInt(), 1001);
  }
  RolloutController again(config());
  again.start();
  SQLite::Database db((dir_ / "pipelined.db").string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM requests WHERE request_id = 'old'").getInt(), 0);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM requests").getInt(), 1000);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM stage_runs").getInt(), 1000);  // its stage rows went with it
}

TEST_F(RolloutTest, TooFewSamplesDecideNothing) {
  RolloutController c(config());
  c.start();
  const std::int64_t id = start_rollout(c, 50);
  for (int i = 0; i < 20; ++i) c.record(row(Arm::Candidate, id, false, 500, 1000, "upstream"));
  c.evaluate_guardrails_now();
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["status"], "live");
}

TEST_F(RolloutTest, StepScheduleAdvancesOnlyAfterTheDwellWithPassingGuardrails) {
  RolloutController c(config());
  c.start();
  auto r = post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 5}, {"steps", {5, 25, 100}}, {"dwell_ms", 0}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  const std::int64_t id = r.body["rollout"]["id"];
  c.evaluate_guardrails_now();  // no data yet: holds
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["percent"], 5.0);
  for (int i = 0; i < 60; ++i) {
    c.record(row(Arm::Stable, id, true, 100));
    c.record(row(Arm::Candidate, id, true, 50));
  }
  c.evaluate_guardrails_now();
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["percent"], 25.0);
  ASSERT_EQ(post(c, "/admin/rollout/pause", {{"pipeline", "p"}}).status, 200);
  c.evaluate_guardrails_now();
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["percent"], 25.0);
  EXPECT_EQ(post(c, "/admin/rollout/pause", {{"pipeline", "p"}}).status, 409);
  ASSERT_EQ(post(c, "/admin/rollout/resume", {{"pipeline", "p"}}).status, 200);
  c.evaluate_guardrails_now();
  auto last = c.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"];
  EXPECT_EQ(last["percent"], 100.0);
  EXPECT_EQ(last["status"], "completed");
}

TEST_F(RolloutTest, StateSurvivesARestart) {
  {
    RolloutController c(config());
    c.start();
    start_rollout(c, 30);
    c.stop();
  }
  RolloutController again(config());
  again.start();
  auto r = again.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"];
  EXPECT_EQ(r["status"], "live");
  EXPECT_EQ(r["percent"], 30.0);
  EXPECT_NEAR(candidate_share(again, 5000), 30, 2.5);
}

TEST_F(RolloutTest, ARolloutLiveDuringACrashComesBackPaused) {
  {
    RolloutController c(config());
    c.start();
    start_rollout(c, 50);
  }
  // That run stopped cleanly; a crash is a run whose stop was never recorded.
  {
    SQLite::Database db((dir_ / "pipelined.db").string(), SQLite::OPEN_READWRITE);
    db.exec("UPDATE daemon_runs SET stopped_ms = NULL WHERE id = (SELECT MAX(id) FROM daemon_runs)");
  }
  RolloutController again(config());
  again.start();
  auto status = again.handle_admin("GET", "/admin/rollout", "").body;
  EXPECT_EQ(status["pipelines"]["p"]["rollout"]["status"], "paused");
  EXPECT_NE(status["pipelines"]["p"]["rollout"]["reason"].get<std::string>().find("without a clean shutdown"), std::string::npos);
  EXPECT_EQ(status["recent_events"][0]["actor"], "daemon");

  // With resume_paused_after_crash: false it comes back at 0 %.
  {
    RolloutController c(config("  resume_paused_after_crash: false\n"));
    c.start();
    ASSERT_EQ(post(c, "/admin/rollout/resume", {{"pipeline", "p"}}).status, 200);
  }
  {
    SQLite::Database db((dir_ / "pipelined.db").string(), SQLite::OPEN_READWRITE);
    db.exec("UPDATE daemon_runs SET stopped_ms = NULL WHERE id = (SELECT MAX(id) FROM daemon_runs)");
  }
  RolloutController zero(config("  resume_paused_after_crash: false\n"));
  zero.start();
  EXPECT_EQ(zero.handle_admin("GET", "/admin/rollout", "").body["pipelines"]["p"]["rollout"]["percent"], 0.0);
}

TEST_F(RolloutTest, MigrationsOnEmptyOlderAndNewerDatabases) {
  const std::string path = (dir_ / "m.db").string();
  {
    auto db = open_database(path);
    EXPECT_EQ(db->execAndGet("PRAGMA user_version").getInt(), migrations().back().version);
    EXPECT_GE(migrations().size(), 2u);
  }
  // An older database: only 001 applied, with a row in it.
  const std::string old_path = (dir_ / "old.db").string();
  {
    SQLite::Database db(old_path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(migrations().front().sql);
    db.exec("PRAGMA user_version = 1");
    db.exec("INSERT INTO requests (time_ms, request_id, pipeline, rollout_id, arm, bucket, http_status, outcome, latency_us, "
            "fell_back, peak_bytes, rss_bytes, variants) VALUES (1, 'old', 'p', 0, 'stable', -1, 200, 'ok', 5, 0, 0, 0, '{}')");
  }
  {
    auto db = open_database(old_path);
    EXPECT_EQ(db->execAndGet("PRAGMA user_version").getInt(), migrations().back().version);
    EXPECT_EQ(db->execAndGet("SELECT request_id FROM requests").getString(), "old");
    EXPECT_EQ(db->execAndGet("SELECT COUNT(*) FROM sqlite_master WHERE name = 'requests_by_arm'").getInt(), 1);
  }
  // A newer database is refused with the reason.
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("PRAGMA user_version = 999");
  }
  try {
    open_database(path);
    FAIL() << "a database newer than the binary was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 999, newer than this binary"), std::string::npos) << e.what();
  }
}

TEST_F(RolloutTest, ALockedDatabaseLosesRowsButNeverARequest) {
  RolloutController c(config());
  c.start();
  {
    SQLite::Database locker((dir_ / "pipelined.db").string(), SQLite::OPEN_READWRITE);
    locker.exec("BEGIN EXCLUSIVE");
    for (int i = 0; i < 10; ++i) EXPECT_NO_THROW(c.record(row(Arm::Stable, 0, true, 10)));
    c.flush();  // the writer gave up on the locked database
    locker.exec("ROLLBACK");
  }
  auto metrics = c.handle_admin("GET", "/admin/rollout", "").body["metrics"];
  EXPECT_EQ(metrics["lost_by_cause"]["locked"], 10) << metrics.dump();
  EXPECT_EQ(metrics["written"], 0);
  c.record(row(Arm::Stable, 0, true, 10));
  c.flush();
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["metrics"]["written"], 1);  // and it recovers
}

TEST_F(RolloutTest, ABrokenDatabaseLosesRowsButNeverARequest) {
  RolloutController c(config());
  c.start();
  // The database file is replaced by garbage under the running writer's path.
  fs::remove(dir_ / "pipelined.db-wal");
  fs::remove(dir_ / "pipelined.db-shm");
  { std::ofstream(dir_ / "pipelined.db", std::ios::trunc) << std::string(8192, 'x'); }
  for (int i = 0; i < 5; ++i) EXPECT_NO_THROW(c.record(row(Arm::Stable, 0, true, 10)));
  c.flush();
  auto metrics = c.handle_admin("GET", "/admin/rollout", "").body["metrics"];
  EXPECT_EQ(metrics["lost"], 5) << metrics.dump();
  // A request's assignment does not touch the database at all.
  EXPECT_EQ(c.assign("p", "k").arm, Arm::Stable);
}

TEST_F(RolloutTest, AFullQueueDropsAndCounts) {
  RolloutController c(config("metrics:\n  queue_capacity: 5\n"));  // not started: nothing drains the queue
  for (int i = 0; i < 8; ++i) c.record(row(Arm::Stable, 0, true, 10));
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout", "").body["metrics"]["lost_by_cause"]["queue_full"], 3);
}

TEST_F(RolloutTest, ReportFiguresMatchTheRows) {
  RolloutController c(config());
  c.start();
  const std::int64_t id = start_rollout(c, 50);
  // stable: latencies 100..199 ms, all ok; candidate: 50..99 ms, 2 of 50 failing.
  for (int i = 0; i < 100; ++i) c.record(row(Arm::Stable, id, true, 100 + i, 1000));
  for (int i = 0; i < 50; ++i) c.record(row(Arm::Candidate, id, i >= 2, 50 + i, 1100, "timeout"));
  auto r = c.handle_admin("GET", "/admin/report?since=1h&pipeline=p", "");
  ASSERT_EQ(r.status, 200) << r.body.dump();
  const json& p = r.body["pipelines"]["p"];
  EXPECT_EQ(p["arms"]["stable"]["requests"], 100);
  EXPECT_EQ(p["arms"]["candidate"]["requests"], 50);
  EXPECT_DOUBLE_EQ(p["arms"]["candidate"]["success_rate"].get<double>(), 48.0 / 50);
  EXPECT_EQ(p["arms"]["candidate"]["errors_by_class"]["timeout"], 2);
  EXPECT_NEAR(p["arms"]["stable"]["latency_ms"]["p50"].get<double>(), 149.5, 1e-9);  // median of 100..199
  EXPECT_NEAR(p["arms"]["candidate"]["latency_ms"]["p50"].get<double>(), 74.5, 1e-9);
  EXPECT_NEAR(p["time_saved"]["p50"].get<double>(), (149.5 - 74.5) / 149.5, 1e-9);
  const json ci = p["time_saved"]["p50_ci95"];
  EXPECT_LE(ci[0].get<double>(), p["time_saved"]["p50"].get<double>());
  EXPECT_GE(ci[1].get<double>(), p["time_saved"]["p50"].get<double>());
  EXPECT_NEAR(p["memory_increase"].get<double>(), 0.1, 1e-9);
  EXPECT_EQ(p["arms"]["candidate"]["stages"]["a"]["runs"], 50);
  EXPECT_EQ(p["verdict"], "keep: meets every criterion");
  EXPECT_EQ(c.handle_admin("GET", "/admin/report?since=yesterday", "").status, 400);
  EXPECT_EQ(c.handle_admin("GET", "/admin/report?pipeline=nope", "").status, 404);
}

TEST_F(RolloutTest, AdminApiRefusesBadInput) {
  RolloutController c(config());
  c.start();
  EXPECT_EQ(c.handle_admin("POST", "/admin/rollout", "{not json").status, 400);
  EXPECT_EQ(post(c, "/admin/rollout", {{"percent", 50}}).status, 400);  // two pipelines: name one
  EXPECT_EQ(post(c, "/admin/rollout", {{"pipeline", "nope"}, {"percent", 50}}).status, 404);
  EXPECT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 150}}).status, 400);
  EXPECT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 5}, {"stages", {{"a", "quantum"}}}}).status, 400);
  EXPECT_EQ(post(c, "/admin/rollout/rollback", json::object()).status, 409);  // nothing live
  EXPECT_EQ(c.handle_admin("GET", "/admin/rollout/nope", "").status, 404);
  // Named stages: only those switch.
  ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 100}, {"stages", {{"b", "parallel"}}}}).status, 200);
  const auto a = c.assign("p", "k");
  EXPECT_EQ(a.variants, (std::map<std::string, std::string>{{"b", "parallel"}}));
}

TEST_F(RolloutTest, PromoteMakesTheCandidateStableOnBothArms) {
  RolloutController c(config());
  c.start();
  start_rollout(c, 50);
  ASSERT_EQ(post(c, "/admin/rollout/promote", {{"pipeline", "p"}}).status, 200);
  for (int i = 0; i < 100; ++i) {
    const auto a = c.assign("p", std::to_string(i));
    ASSERT_EQ(a.arm, Arm::Stable);
    ASSERT_EQ(a.variants.at("a"), "parallel");
  }
}

TEST_F(RolloutTest, ShadowShareRunsTheCandidateBesideStable) {
  RolloutController c(config());
  c.start();
  ASSERT_EQ(post(c, "/admin/rollout", {{"pipeline", "p"}, {"percent", 0}, {"shadow_percent", 10}}).status, 200);
  int shadow = 0;
  for (int i = 0; i < 10000; ++i) {
    const auto a = c.assign("p", "s" + std::to_string(i));
    ASSERT_EQ(a.arm, Arm::Stable);
    if (a.shadow) {
      ++shadow;
      ASSERT_EQ(a.shadow_variants.at("a"), "parallel");
      ASSERT_TRUE(a.variants.empty());
    }
  }
  EXPECT_NEAR(shadow / 100.0, 10, 1);
}

TEST(Compare, RulesForShadowOutputs) {
  const json a = {{"categories", {{{"name", "Sushi"}, {"items", {{{"name", "Tuna"}, {"image_url", "http://x/1"}}}}}}}, {"t", 1.5}};
  json b = a;
  EXPECT_EQ(first_difference(a, b, {}), "");
  b["categories"][0]["items"][0]["image_url"] = "http://x/2";
  EXPECT_EQ(first_difference(a, b, {}), "/categories/0/items/0/image_url");
  EXPECT_EQ(first_difference(a, b, {{"/categories/*/items/*/image_url"}, false}), "");
  b["t"] = 2.5;
  EXPECT_EQ(first_difference(a, b, {{"/categories/*/items/*/image_url"}, false}), "/t");
  EXPECT_EQ(first_difference(a, b, {{"/categories/*/items/*/image_url", "/t"}, false}), "");
  const json x = {{"list", {1, 2, 3}}}, y = {{"list", {3, 1, 2}}};
  EXPECT_EQ(first_difference(x, y, {}), "/list/0");
  EXPECT_EQ(first_difference(x, y, {{}, true}), "");
  EXPECT_EQ(first_difference(x, json{{"list", {1, 2}}}, {{}, true}), "/list/2");  // a missing element
  EXPECT_EQ(first_difference(json{{"a", 1}}, json{{"a", 1}, {"b", 2}}, {}), "/b");
}

}  // namespace
}  // namespace pipelined::rollout

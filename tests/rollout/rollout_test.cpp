#include "rollout/rollout.h"

#include <gtest/gtest.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

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

  // Pipelines p (stages a, b) and q (stage c), each stage serial (stable) and parallel.
  RolloutSettings settings(const std::function<void(RolloutSettings&)>& change = {}) {
    RolloutSettings s;
    auto stage = [](const std::string& name) { return StageCatalog{name, "serial", "parallel", {"serial", "parallel"}}; };
    s.pipelines = {{"p", {stage("a"), stage("b")}, false}, {"q", {stage("c")}, false}};
    s.allow_force_header = true;
    s.guardrail_interval = Millis(3600000);  // the tests run the passes themselves
    s.database = (dir_ / "pipelined.db").string();
    if (change) change(s);
    return s;
  }

  static RolloutChange change(const std::string& pipeline, double percent) {
    RolloutChange c;
    c.pipeline = pipeline;
    c.percent = percent;
    c.actor = "test";
    return c;
  }
  template <class T>
  static bool ok(const Result<T>& r) {
    if (const auto* e = std::get_if<Error>(&r)) {
      ADD_FAILURE() << e->message;
      return false;
    }
    return true;
  }
  template <class T>
  static Error::Kind error_kind(const Result<T>& r) {
    const auto* e = std::get_if<Error>(&r);
    EXPECT_NE(e, nullptr) << "expected an error";
    return e ? e->kind : Error::Kind::Invalid;
  }
  static Rollout current(const RolloutController& c, const std::string& pipeline = "p") {
    const auto s = c.status();
    const auto& r = s.pipelines.at(pipeline).rollout;
    EXPECT_TRUE(r.has_value());
    return r.value_or(Rollout{});
  }
  static json metrics_json(const RolloutController& c) { return c.status().to_json()["metrics"]; }

  static double candidate_share(const RolloutController& c, int keys = 20000) {
    int candidate = 0;
    for (int i = 0; i < keys; ++i) candidate += c.assign("p", "user-" + std::to_string(i)).arm == Arm::Candidate;
    return 100.0 * candidate / keys;
  }

  // A request row on `arm` of rollout `rollout_id`. `own_failure` without `user_failed`: a failed
  // attempt that a fallback rescued.
  static RequestRecord row(Arm arm, std::int64_t rollout_id, bool user_ok, double latency_ms, std::int64_t peak = 1000,
                           const std::string& own_failure = "") {
    RequestRecord r;
    r.time_ms = now_ms();
    r.request_id = "r";
    r.pipeline = "p";
    r.rollout_id = rollout_id;
    r.arm = arm;
    r.bucket = 1;
    r.outcome = user_ok ? "ok" : "error";
    r.http_status = user_ok ? 200 : 502;
    r.own_failure = own_failure.empty() && !user_ok ? "a: upstream" : own_failure;
    r.error_class = user_ok ? "" : r.own_failure.substr(r.own_failure.find(": ") + 2);
    r.fell_back = user_ok && !r.own_failure.empty();
    r.latency_us = static_cast<std::int64_t>(latency_ms * 1000);
    r.peak_bytes = peak;
    r.rss_bytes = 1 << 20;
    const bool candidate = arm == Arm::Candidate;
    r.stages = {{"a", candidate && !r.fell_back ? "parallel" : "serial", "1.0.0", 0, r.latency_us / 2, r.fell_back ? "fell_back" : "ok", r.fell_back ? 2 : 1,
                 r.own_failure.empty() ? "" : "upstream", peak}};
    return r;
  }

  std::int64_t start_rollout(RolloutController& c, double percent) {
    auto r = c.start_or_update(change("p", percent));
    EXPECT_TRUE(ok(r));
    return std::get<Changed>(r).rollouts.at(0).id;
  }

  // n rows per arm; the candidate's latency `ratio` of stable's, each arm with a lognormal spread.
  static constexpr std::int64_t kStablePeak = 64 << 20;
  static void feed(RolloutController& c, std::int64_t id, int n, double ratio, double candidate_own_failure = 0,
                   std::int64_t candidate_peak = kStablePeak, std::int64_t stable_peak = kStablePeak) {
    std::mt19937 rng(7);
    std::lognormal_distribution<double> spread(0, 0.3);
    std::uniform_real_distribution<double> u(0, 1);
    for (int i = 0; i < n; ++i) {
      c.record(row(Arm::Stable, id, true, 100 * spread(rng), stable_peak));
      const bool failed = u(rng) < candidate_own_failure;
      c.record(row(Arm::Candidate, id, true, 100 * ratio * spread(rng), candidate_peak, failed ? "a: crashed" : ""));
    }
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
  RolloutController c(settings());
  c.start();
  EXPECT_EQ(c.assign("p", "anyone").arm, Arm::Stable);  // no rollout yet
  for (double target : {10.0, 50.0, 90.0}) {
    ASSERT_TRUE(ok(c.start_or_update(change("p", target))));
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

TEST_F(RolloutTest, ForcedArmNeedsTheSettingsToAllowIt) {
  RolloutController c(settings([](RolloutSettings& s) { s.allow_force_header = false; }));
  c.start();
  ASSERT_TRUE(ok(c.start_or_update(change("p", 0))));
  EXPECT_EQ(c.assign("p", "k", Arm::Candidate).arm, Arm::Stable);
}

TEST_F(RolloutTest, ShareChangesAreMonotonicAndSticky) {
  RolloutController c(settings());
  c.start();
  start_rollout(c, 10);
  std::vector<Arm> at10, at50;
  for (int i = 0; i < 5000; ++i) at10.push_back(c.assign("p", "u" + std::to_string(i)).arm);
  ASSERT_TRUE(ok(c.start_or_update(change("p", 50))));
  for (int i = 0; i < 5000; ++i) {
    at50.push_back(c.assign("p", "u" + std::to_string(i)).arm);
    if (at10[i] == Arm::Candidate) {
      ASSERT_EQ(at50[i], Arm::Candidate) << "raising moved a user back to stable";
    }
    ASSERT_EQ(c.assign("p", "u" + std::to_string(i)).arm, at50[i]) << "not sticky";
  }
  ASSERT_TRUE(ok(c.start_or_update(change("p", 20))));
  for (int i = 0; i < 5000; ++i)
    if (at50[i] == Arm::Stable) {
      ASSERT_EQ(c.assign("p", "u" + std::to_string(i)).arm, Arm::Stable) << "lowering moved a user to candidate";
    }
  c.stop();
  // Another controller on the same state (a restarted daemon, or a second one) gives the same arms.
  RolloutController other(settings());
  other.start();
  RolloutController& same = other;
  for (int i = 0; i < 2000; ++i) {
    const std::string key = "u" + std::to_string(i);
    const Arm expected = bucket_of("p#" + std::to_string(same.assign("p", key).rollout_id), key) < 2000 ? Arm::Candidate : Arm::Stable;
    ASSERT_EQ(same.assign("p", key).arm, expected);
  }
}

TEST_F(RolloutTest, AFasterHealthyCandidateIsKeptAndAFailingOneRolledBack) {
  RolloutController c(settings());
  c.start();
  std::int64_t id = start_rollout(c, 50);
  feed(c, id, 400, 0.6);  // 40 % faster, never fails, same memory
  c.evaluate_guardrails_now();
  auto s = c.status();
  EXPECT_EQ(current(c).status, RolloutStatus::Live);
  ASSERT_TRUE(s.pipelines.at("p").verdict.has_value());
  ASSERT_EQ(s.pipelines.at("p").verdict->decision, Decision::Keep) << s.pipelines.at("p").verdict->reason;
  EXPECT_EQ(s.recent_events.at(0).action, "decision");  // the change to "keep" is recorded, with its figures
  EXPECT_EQ(s.recent_events.at(0).details["decision"], "keep");

  // A new candidate whose user-facing answers all succeed, because stage fallback rescues the 30 %
  // of its runs that fail: its own success is 70 %, and that is what is judged.
  ASSERT_TRUE(ok(c.rollback({"p"})));
  id = start_rollout(c, 50);
  feed(c, id, 200, 0.6, 0.30);
  c.evaluate_guardrails_now();
  const Rollout r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::RolledBack);
  EXPECT_NE(r.reason.find("candidate success"), std::string::npos) << r.reason;
  s = c.status();
  EXPECT_EQ(s.recent_events.at(0).actor, "guardrail");
  EXPECT_EQ(s.recent_events.at(0).details["decision"], "roll_back");
  EXPECT_FALSE(s.recent_events.at(0).details["checks"].empty());
  EXPECT_EQ(c.assign("p", "anyone").arm, Arm::Stable);  // effective at once
}

// A daemon restarted on the same database (or a replica that takes the lease) goes on from the
// decision its predecessor recorded: an unchanged "keep" is not recorded a second time, a new one is.
TEST_F(RolloutTest, ARestartedControllerDoesNotRecordTheSameDecisionAgain) {
  std::int64_t id = 0;
  auto decisions = [&](const RolloutController& c) {
    int n = 0;
    for (const auto& e : c.status().recent_events) n += e.rollout_id == id && e.action == "decision";
    return n;
  };
  {
    RolloutController c(settings());
    c.start();
    id = start_rollout(c, 50);
    feed(c, id, 400, 0.6);
    c.evaluate_guardrails_now();
    c.evaluate_guardrails_now();
    ASSERT_EQ(decisions(c), 1);
    c.stop();
  }
  RolloutController again(settings());
  again.start();
  again.evaluate_guardrails_now();
  ASSERT_TRUE(again.status().pipelines.at("p").verdict.has_value());
  EXPECT_EQ(again.status().pipelines.at("p").verdict->decision, Decision::Keep);
  EXPECT_EQ(decisions(again), 1) << "the restarted controller recorded its predecessor's decision again";
  // A different verdict is acted on: 30 % of the candidate's runs now fail.
  feed(again, id, 400, 0.6, 0.30);
  again.evaluate_guardrails_now();
  EXPECT_EQ(current(again).status, RolloutStatus::RolledBack);
}

// The menu pipeline's case: requests that peak at 1 MiB on stable and 2.4 MiB on the candidate are
// +140 % by percentage, but 1.4 MiB per request is under min_memory_increase_bytes (4 MiB): the
// memory check holds and the faster candidate is kept.
TEST_F(RolloutTest, ASmallHeapIsNotJudgedByItsPercentageAlone) {
  RolloutController c(settings());
  c.start();
  const std::int64_t id = start_rollout(c, 50);
  feed(c, id, 400, 0.6, 0, 2400000, 1000000);
  c.evaluate_guardrails_now();
  const auto s = c.status();
  EXPECT_EQ(current(c).status, RolloutStatus::Live);
  ASSERT_TRUE(s.pipelines.at("p").verdict.has_value());
  const Verdict& v = *s.pipelines.at("p").verdict;
  EXPECT_EQ(v.decision, Decision::Keep) << v.reason;
  for (const auto& check : v.checks)
    if (check.rule == "memory") {
      EXPECT_EQ(check.result, CheckResult::Holds) << check.text;
      EXPECT_NEAR(check.estimate, 1.4, 0.01) << check.text;
      EXPECT_NE(check.text.find("+1.3 MiB"), std::string::npos) << check.text;  // 1 400 000 bytes
    }
}

TEST_F(RolloutTest, SlowHungryAndErroringCandidatesAreRolledBack) {
  RolloutController c(settings());
  c.start();
  std::int64_t id = start_rollout(c, 50);
  feed(c, id, 300, 1.0);  // no faster: the team's rule wants 10 %
  c.evaluate_guardrails_now();
  Rollout r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::RolledBack);
  EXPECT_NE(r.reason.find("time saved"), std::string::npos) << r.reason;

  id = start_rollout(c, 50);
  feed(c, id, 300, 0.6, 0, kStablePeak * 3 / 2);  // 50 % more memory: 32 MiB more per request
  c.evaluate_guardrails_now();
  r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::RolledBack);
  EXPECT_NE(r.reason.find("memory +50.0 %"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("+32.0 MiB"), std::string::npos) << r.reason;

  // A failure class stable never shows, on 15 % of candidate requests.
  id = start_rollout(c, 50);
  for (int i = 0; i < 300; ++i) {
    c.record(row(Arm::Stable, id, true, 100));
    c.record(row(Arm::Candidate, id, i % 20 > 2, 50, 1000, i % 20 > 2 ? "" : "a: malformed"));
  }
  c.evaluate_guardrails_now();
  r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::RolledBack);
  EXPECT_NE(r.reason.find("error class 'malformed'"), std::string::npos) << r.reason;
}

TEST_F(RolloutTest, ShadowMismatchesRollBack) {
  RolloutController c(settings());
  c.start();
  auto ch = change("p", 0);
  ch.shadow_percent = 50;
  ASSERT_TRUE(ok(c.start_or_update(ch)));
  const std::int64_t id = current(c).id;
  for (int i = 0; i < 400; ++i) {
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
  const Rollout r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::RolledBack);
  EXPECT_NE(r.reason.find("shadow mismatch 10.0 %"), std::string::npos) << r.reason;
}

TEST_F(RolloutTest, ACriticalFailureRateRollsBackAtOnceAndFewSamplesDecideNothingElse) {
  RolloutController c(settings());
  c.start();
  const std::int64_t id = start_rollout(c, 50);
  for (int i = 0; i < 10; ++i) c.record(row(Arm::Candidate, id, false, 500));
  c.evaluate_guardrails_now();
  EXPECT_EQ(current(c).status, RolloutStatus::Live);  // 10 requests: below hard_min_requests (20)
  // The checks' JSON says what each figure counts: critical_crashes counts requests, the others fractions.
  const json checks = verdict_json(*c.status().pipelines.at("p").verdict)["checks"];
  int crash_checks = 0;
  for (const auto& ch : checks) {
    crash_checks += ch["rule"] == "critical_crashes";
    EXPECT_EQ(ch["unit"], ch["rule"] == "critical_crashes" ? "requests" : "fraction") << ch.dump();
  }
  EXPECT_EQ(crash_checks, 1) << checks.dump();
  for (int i = 0; i < 10; ++i) c.record(row(Arm::Candidate, id, i % 2 == 0, 500));
  c.evaluate_guardrails_now();  // 5 of 20 succeeded: under 80 %, with no stable request at all
  const Rollout r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::RolledBack);
  EXPECT_NE(r.reason.find("(critical)"), std::string::npos) << r.reason;
}

TEST_F(RolloutTest, RequestsStillRunningHoldBackTheRowsThatStartedAfterThem) {
  RolloutController c(settings());
  c.start();
  const std::int64_t id = start_rollout(c, 50);
  // A slow candidate request is still running; the rows of the requests that started after it
  // (fast ones that finished) are not judged yet: judging them alone would favour the slow arm.
  const Assignment running = c.assign("p", "slow-user");
  for (int i = 0; i < 300; ++i) {
    RequestRecord s = row(Arm::Stable, id, true, 100), k = row(Arm::Candidate, id, true, 200);
    s.time_ms = k.time_ms = running.started_ms + 1;
    c.record(s);
    c.record(k);
  }
  c.evaluate_guardrails_now();
  EXPECT_EQ(current(c).status, RolloutStatus::Live);
  EXPECT_EQ(c.status().pipelines.at("p").verdict->n_candidate, 0);
  RequestRecord done = row(running.arm, id, true, 300);
  done.time_ms = running.started_ms;
  c.record(done);  // it finished: now everything is complete
  c.evaluate_guardrails_now();
  EXPECT_EQ(current(c).status, RolloutStatus::RolledBack);
}

TEST_F(RolloutTest, ASampleRatioMismatchPausesTheRollout) {
  RolloutController c(settings());
  c.start();
  const std::int64_t id = start_rollout(c, 50);
  // Configured 50 %, observed 25 %: candidate requests are being lost or misassigned.
  std::mt19937 rng(3);
  std::lognormal_distribution<double> spread(0, 0.3);
  for (int i = 0; i < 400; ++i) {
    c.record(row(i % 4 == 0 ? Arm::Candidate : Arm::Stable, id, true, (i % 4 == 0 ? 60 : 100) * spread(rng), 1000000));
  }
  c.evaluate_guardrails_now();
  const Rollout r = current(c);
  EXPECT_EQ(r.status, RolloutStatus::Paused);
  EXPECT_NE(r.reason.find("sample-ratio mismatch"), std::string::npos) << r.reason;
}

TEST_F(RolloutTest, StopWritesEveryQueuedRowAndStartEnforcesRetention) {
  {
    RolloutController c(settings([](RolloutSettings& s) { s.flush_interval = Millis(60000); }));  // nothing written before stop
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
  RolloutController again(settings());
  again.start();
  SQLite::Database db((dir_ / "pipelined.db").string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM requests WHERE request_id = 'old'").getInt(), 0);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM requests").getInt(), 1000);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM stage_runs").getInt(), 1000);  // its stage rows went with it
}

TEST_F(RolloutTest, StepScheduleAdvancesOnlyWhenEveryCriterionConfidentlyHolds) {
  RolloutController c(settings());
  c.start();
  auto ch = change("p", 50);
  ch.steps = std::vector<double>{50, 75, 100};
  ch.dwell = Millis(0);
  ASSERT_TRUE(ok(c.start_or_update(ch)));
  const std::int64_t id = current(c).id;
  c.evaluate_guardrails_now();  // no data yet: holds
  EXPECT_EQ(current(c).percent_bp, 5000);
  feed(c, id, 60, 0.6);
  c.evaluate_guardrails_now();  // faster, but 60 requests cannot show 95 % success with confidence
  EXPECT_EQ(current(c).percent_bp, 5000);
  EXPECT_EQ(c.status().pipelines.at("p").verdict->decision, Decision::Collecting);
  EXPECT_NE(c.status().pipelines.at("p").verdict->reason.find("more requests per arm"), std::string::npos);
  feed(c, id, 400, 0.6);
  c.evaluate_guardrails_now();
  EXPECT_EQ(current(c).percent_bp, 7500);
  ASSERT_TRUE(ok(c.pause({"p"})));
  c.evaluate_guardrails_now();
  EXPECT_EQ(current(c).percent_bp, 7500);
  EXPECT_EQ(error_kind(c.pause({"p"})), Error::Kind::Conflict);
  ASSERT_TRUE(ok(c.resume({"p"})));
  c.evaluate_guardrails_now();
  const Rollout last = current(c);
  EXPECT_EQ(last.percent_bp, 10000);
  EXPECT_EQ(last.status, RolloutStatus::Completed);
}

TEST_F(RolloutTest, StateSurvivesARestart) {
  {
    RolloutController c(settings());
    c.start();
    start_rollout(c, 30);
    c.stop();
  }
  RolloutController again(settings());
  again.start();
  const Rollout r = current(again);
  EXPECT_EQ(r.status, RolloutStatus::Live);
  EXPECT_EQ(r.percent_bp, 3000);
  EXPECT_NEAR(candidate_share(again, 5000), 30, 2.5);
}

TEST_F(RolloutTest, AfterACrashTheCandidateGetsNoTrafficUntilResumed) {
  {
    RolloutController c(settings());
    c.start();
    start_rollout(c, 50);
  }
  // That run stopped cleanly; a crash is a run whose stop was never recorded.
  auto crash = [&] {
    SQLite::Database db((dir_ / "pipelined.db").string(), SQLite::OPEN_READWRITE);
    db.exec("UPDATE daemon_runs SET stopped_ms = NULL WHERE id = (SELECT MAX(id) FROM daemon_runs)");
  };
  crash();
  {
    RolloutController again(settings());
    again.start("signal 11 (SEGV); non-stable plugins loaded: p/a/parallel");
    const Rollout r = current(again);
    EXPECT_EQ(r.status, RolloutStatus::Paused);
    EXPECT_EQ(r.percent_bp, 0);
    EXPECT_EQ(candidate_share(again, 2000), 0);
    EXPECT_NE(r.reason.find("without a clean stop (signal 11"), std::string::npos) << r.reason;
    EXPECT_NE(r.reason.find("p/a/parallel"), std::string::npos) << r.reason;
    EXPECT_EQ(again.status().recent_events.at(0).actor, "daemon");
  }
  crash();  // crashes again before anyone resumed: still nothing on the candidate
  {
    RolloutController third(settings());
    third.start();
    EXPECT_EQ(current(third).percent_bp, 0);
    ASSERT_TRUE(ok(third.resume({"p"})));
    EXPECT_EQ(current(third).percent_bp, 5000);  // the share it had
    EXPECT_NEAR(candidate_share(third, 5000), 50, 2.5);
  }
}

TEST_F(RolloutTest, MigrationsOnEmptyOlderAndNewerDatabases) {
  const std::string path = (dir_ / "m.db").string();
  // One integer the first row's first column holds.
  auto scalar = [](Database& db, const std::string& sql) {
    std::int64_t out = -1;
    db.query(sql, {}, [&](const SqlRow& r) { out = r.integer(0); });
    return out;
  };
  {
    auto db = open_database(path);
    EXPECT_EQ(scalar(*db, "PRAGMA user_version"), migrations().back().version);
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
    EXPECT_EQ(scalar(*db, "PRAGMA user_version"), migrations().back().version);
    std::string id;
    db->query("SELECT request_id FROM requests", {}, [&](const SqlRow& r) { id = r.text(0); });
    EXPECT_EQ(id, "old");
    EXPECT_EQ(scalar(*db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'requests_by_arm'"), 1);
  }
  // A newer database is refused with the reason.
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("PRAGMA user_version = 999");
  }
  try {
    open_database(path);
    FAIL() << "a database newer than the binary was accepted";
  } catch (const DatabaseError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 999, newer than this binary"), std::string::npos) << e.what();
  }
}

TEST_F(RolloutTest, ALockedDatabaseLosesRowsButNeverARequest) {
  RolloutController c(settings());
  c.start();
  {
    SQLite::Database locker((dir_ / "pipelined.db").string(), SQLite::OPEN_READWRITE);
    locker.exec("BEGIN EXCLUSIVE");
    for (int i = 0; i < 10; ++i) EXPECT_NO_THROW(c.record(row(Arm::Stable, 0, true, 10)));
    c.flush();  // the writer gave up on the locked database
    locker.exec("ROLLBACK");
  }
  auto metrics = metrics_json(c);
  EXPECT_EQ(metrics["lost_by_cause"]["locked"], 10) << metrics.dump();
  EXPECT_EQ(metrics["written"], 0);
  c.record(row(Arm::Stable, 0, true, 10));
  c.flush();
  EXPECT_EQ(metrics_json(c)["written"], 1);  // and it recovers
}

TEST_F(RolloutTest, ABrokenDatabaseLosesRowsButNeverARequest) {
  RolloutController c(settings());
  c.start();
  // The database file is replaced by garbage under the running writer's path.
  fs::remove(dir_ / "pipelined.db-wal");
  fs::remove(dir_ / "pipelined.db-shm");
  { std::ofstream(dir_ / "pipelined.db", std::ios::trunc) << std::string(8192, 'x'); }
  for (int i = 0; i < 5; ++i) EXPECT_NO_THROW(c.record(row(Arm::Stable, 0, true, 10)));
  c.flush();
  auto metrics = metrics_json(c);
  EXPECT_EQ(metrics["lost"], 5) << metrics.dump();
  // A request's assignment does not touch the database at all.
  EXPECT_EQ(c.assign("p", "k").arm, Arm::Stable);
}

TEST_F(RolloutTest, AFullQueueDropsAndCounts) {
  RolloutController c(settings([](RolloutSettings& s) { s.queue_capacity = 5; }));  // not started: nothing drains the queue
  for (int i = 0; i < 8; ++i) c.record(row(Arm::Stable, 0, true, 10));
  EXPECT_EQ(metrics_json(c)["lost_by_cause"]["queue_full"], 3);
}

TEST_F(RolloutTest, ReportFiguresMatchTheRowsOfOneRollout) {
  RolloutController c(settings());
  c.start();
  const std::int64_t first = start_rollout(c, 10);
  for (int i = 0; i < 30; ++i) c.record(row(Arm::Candidate, first, true, 1000));  // another rollout's rows
  ASSERT_TRUE(ok(c.rollback({"p"})));
  const std::int64_t id = start_rollout(c, 50);
  // stable: latencies 100..199 ms, all ok; candidate: 50..99 ms, 2 of 50 failing for users, 3 more rescued.
  for (int i = 0; i < 100; ++i) c.record(row(Arm::Stable, id, true, 100 + i, 100000));
  for (int i = 0; i < 50; ++i) c.record(row(Arm::Candidate, id, i >= 2, 50 + i, 110000, i < 2 ? "a: timeout" : i < 5 ? "a: internal" : ""));
  auto r = c.report({"p", Millis(3600000), 0});
  ASSERT_TRUE(ok(r));
  const json& p = std::get<json>(r)["pipelines"]["p"];
  EXPECT_EQ(p["rollout"]["id"], id);
  EXPECT_EQ(p["arms"]["stable"]["requests"], 100);
  EXPECT_EQ(p["arms"]["candidate"]["requests"], 50);  // not the other rollout's 30
  EXPECT_DOUBLE_EQ(p["arms"]["candidate"]["success_rate"].get<double>(), 48.0 / 50);
  EXPECT_DOUBLE_EQ(p["arms"]["candidate"]["own_success_rate"].get<double>(), 45.0 / 50);
  EXPECT_EQ(p["arms"]["candidate"]["fallbacks"], 3);
  EXPECT_EQ(p["arms"]["candidate"]["errors_by_class"]["timeout"], 2);
  EXPECT_EQ(p["arms"]["candidate"]["own_failures_by_class"]["internal"], 3);
  EXPECT_EQ(p["arms"]["candidate"]["stages"]["a"]["fallbacks"], 3);
  EXPECT_NEAR(p["arms"]["stable"]["latency_ms"]["p50"].get<double>(), 149.5, 1e-9);  // median of 100..199
  EXPECT_NEAR(p["arms"]["candidate"]["latency_ms"]["p50"].get<double>(), 74.5, 1e-9);
  EXPECT_NEAR(p["time_saved"]["p50"].get<double>(), (149.5 - 74.5) / 149.5, 1e-9);
  EXPECT_LE(p["time_saved"]["low"].get<double>(), p["time_saved"]["estimate"].get<double>());
  EXPECT_GE(p["time_saved"]["high"].get<double>(), p["time_saved"]["estimate"].get<double>());
  EXPECT_NEAR(p["memory_increase"]["estimate"].get<double>(), 0.1, 1e-5);  // geometric means of log(1 + bytes)
  EXPECT_EQ(p["arms"]["candidate"]["stages"]["a"]["runs"], 50);
  EXPECT_EQ(p["decision"]["decision"], "collecting");  // 90 % own success of 50: not yet confidently under 95 %
  EXPECT_NE(p["verdict"].get<std::string>().find("candidate success 90.0 %"), std::string::npos) << p["verdict"];
  // For charts: both arms' histograms on the same edges, from the fastest (50 ms) to the slowest
  // (199 ms), holding every request; the timeline's buckets add up to the arms' figures.
  for (const char* arm : {"stable", "candidate"}) {
    const json& h = p["arms"][arm]["latency_histogram"];
    EXPECT_EQ(h["edges_ms"], p["arms"]["stable"]["latency_histogram"]["edges_ms"]);
    EXPECT_EQ(h["counts"].size() + 1, h["edges_ms"].size());
    long n = 0;
    for (const auto& c : h["counts"]) n += c.get<long>();
    EXPECT_EQ(n, p["arms"][arm]["requests"].get<long>()) << arm;
  }
  EXPECT_NEAR(p["arms"]["stable"]["latency_histogram"]["edges_ms"].front().get<double>(), 50, 1e-9);
  EXPECT_NEAR(p["arms"]["stable"]["latency_histogram"]["edges_ms"].back().get<double>(), 199, 1e-9);
  const json& t = p["timeline"];
  ASSERT_FALSE(t["start_ms"].empty()) << t.dump();
  EXPECT_LE(t["start_ms"].size(), 40u);
  long stable = 0, candidate = 0, candidate_ok = 0, candidate_own_ok = 0;
  for (std::size_t b = 0; b < t["start_ms"].size(); ++b) {
    const long ns = t["arms"]["stable"]["requests"][b], nc = t["arms"]["candidate"]["requests"][b];
    stable += ns, candidate += nc;
    if (nc == 0) {
      EXPECT_TRUE(t["arms"]["candidate"]["success_rate"][b].is_null());
      continue;
    }
    candidate_ok += std::lround(t["arms"]["candidate"]["success_rate"][b].get<double>() * nc);
    candidate_own_ok += std::lround(t["arms"]["candidate"]["own_success_rate"][b].get<double>() * nc);
    EXPECT_NEAR(t["candidate_share"][b].get<double>(), static_cast<double>(nc) / (nc + ns), 1e-9);
  }
  EXPECT_EQ(stable, 100);
  EXPECT_EQ(candidate, 50);
  EXPECT_EQ(candidate_ok, 48);
  EXPECT_EQ(candidate_own_ok, 45);
  // The earlier rollout on request, alone.
  auto old = c.report({"", Millis(3600000), first});
  ASSERT_TRUE(ok(old));
  EXPECT_EQ(std::get<json>(old)["pipelines"]["p"]["arms"]["candidate"]["requests"], 30);
  EXPECT_FALSE(std::get<json>(old)["pipelines"].contains("q"));
  EXPECT_EQ(error_kind(c.report({"nope", Millis(1000), 0})), Error::Kind::NotFound);
  EXPECT_EQ(error_kind(c.report({"", Millis(1000), 999})), Error::Kind::NotFound);
}

TEST_F(RolloutTest, OperatorActionsRefuseBadInput) {
  RolloutController c(settings());
  c.start();
  EXPECT_EQ(error_kind(c.start_or_update(change("", 50))), Error::Kind::Invalid);  // two pipelines: name one
  EXPECT_EQ(error_kind(c.start_or_update(change("nope", 50))), Error::Kind::NotFound);
  EXPECT_EQ(error_kind(c.start_or_update(change("p", 150))), Error::Kind::Invalid);
  auto bad = change("p", 5);
  bad.stages = {{"a", "quantum"}};
  EXPECT_EQ(error_kind(c.start_or_update(bad)), Error::Kind::Invalid);
  bad.stages = {};
  bad.steps = std::vector<double>{50, 25};
  EXPECT_EQ(error_kind(c.start_or_update(bad)), Error::Kind::Invalid);
  EXPECT_EQ(error_kind(c.rollback({})), Error::Kind::Conflict);  // nothing live
  // Named stages: only those switch.
  auto named = change("p", 100);
  named.stages = {{"b", "parallel"}};
  ASSERT_TRUE(ok(c.start_or_update(named)));
  EXPECT_EQ(c.assign("p", "k").variants, (std::map<std::string, std::string>{{"b", "parallel"}}));
}

TEST_F(RolloutTest, WithoutAConfiguredCandidateARolloutMustNameItsStages) {
  RolloutController c(settings([](RolloutSettings& s) {
    for (auto& st : s.pipelines[0].stages) st.candidate.clear();
  }));
  c.start();
  auto r = c.start_or_update(change("p", 10));
  ASSERT_EQ(error_kind(r), Error::Kind::Invalid);
  EXPECT_NE(std::get<Error>(r).message.find("candidate"), std::string::npos);
}

TEST_F(RolloutTest, PromoteMakesTheCandidateStableOnBothArms) {
  RolloutController c(settings());
  c.start();
  start_rollout(c, 50);
  ASSERT_TRUE(ok(c.promote({"p"})));
  for (int i = 0; i < 100; ++i) {
    const auto a = c.assign("p", std::to_string(i));
    ASSERT_EQ(a.arm, Arm::Stable);
    ASSERT_EQ(a.variants.at("a"), "parallel");
  }
}

TEST_F(RolloutTest, ShadowShareRunsTheCandidateBesideStable) {
  RolloutController c(settings());
  c.start();
  auto ch = change("p", 0);
  ch.shadow_percent = 10;
  ASSERT_TRUE(ok(c.start_or_update(ch)));
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
  // An index too large for size_t names no element (it threw std::out_of_range; shadow_compare_fuzz).
  EXPECT_EQ(first_difference(x, y, {{"/list/99999999999999999999999", "/list/99999999999999999999999/a"}, false}), "/list/0");
  EXPECT_EQ(first_difference(x, json{{"list", {1, 5, 3}}}, {{"/list/1"}, false}), "");
}

}  // namespace
}  // namespace pipelined::rollout

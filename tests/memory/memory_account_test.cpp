#include "daemon/memory/memory_account.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "daemon/pool/worker_pool.h"

namespace pipelined::memory {
namespace {

constexpr std::int64_t kMiB = 1 << 20;

TEST(MemoryAccount, ChargeAndReleaseTrackCurrentAndPeak) {
  MemoryAccount a;
  a.charge(100);
  a.charge(50);
  a.release(120);
  EXPECT_EQ(a.current.load(), 30);
  EXPECT_EQ(a.peak_bytes(), 150);
  a.release(1000);  // freed memory this account never charged: clamps at zero
  EXPECT_EQ(a.current.load(), 0);
}

TEST(MemoryAccount, ChildChargesItsParent) {
  MemoryAccount request;
  MemoryAccount stage;
  stage.parent = &request;
  stage.charge(70);
  request.charge(10);
  EXPECT_EQ(stage.peak_bytes(), 70);
  EXPECT_EQ(request.peak_bytes(), 80);
}

TEST(MemoryAccount, PassingTheLimitSetsExceededAndTheCancelFlag) {
  std::atomic<bool> cancel{false};
  MemoryAccount request;
  request.limit = 100;
  request.cancel = &cancel;
  MemoryAccount stage;
  stage.parent = &request;
  stage.charge(100);  // at the limit is not past it
  EXPECT_FALSE(request.exceeded.load());
  EXPECT_FALSE(cancel.load());
  stage.charge(1);
  EXPECT_TRUE(request.exceeded.load());
  EXPECT_TRUE(cancel.load());
  EXPECT_FALSE(stage.exceeded.load());  // the stage account has no limit of its own
}

TEST(MemoryAccount, ScopedAccountNestsAndRestores) {
  MemoryAccount outer, inner;
  EXPECT_EQ(current(), nullptr);
  {
    ScopedAccount a(&outer);
    EXPECT_EQ(current(), &outer);
    {
      ScopedAccount b(&inner);
      EXPECT_EQ(current(), &inner);
    }
    EXPECT_EQ(current(), &outer);
  }
  EXPECT_EQ(current(), nullptr);
}

TEST(MemoryAccount, ProcessRssIsPositive) { EXPECT_GT(process_rss_bytes(), 0); }

TEST(Accounting, AllocationInsideAScopeIsCharged) {
  if (!accounting_enabled()) GTEST_SKIP() << "operator new replacement not active (sanitizer build)";
  MemoryAccount a;
  {
    ScopedAccount scope(&a);
    auto block = std::make_unique<char[]>(10 * kMiB);
    block[0] = 1;
    EXPECT_GE(a.current.load(), 10 * kMiB);
  }
  EXPECT_GE(a.peak_bytes(), 10 * kMiB);
  EXPECT_LT(a.current.load(), kMiB);  // freed inside the scope
}

TEST(Accounting, PeakIsTheHighWaterMark) {
  if (!accounting_enabled()) GTEST_SKIP() << "operator new replacement not active (sanitizer build)";
  MemoryAccount a;
  {
    ScopedAccount scope(&a);
    for (int i = 0; i < 5; ++i) {
      std::vector<char> v(4 * kMiB, 'x');
      EXPECT_EQ(v.back(), 'x');
    }
  }
  EXPECT_GE(a.peak_bytes(), 4 * kMiB);
  EXPECT_LT(a.peak_bytes(), 8 * kMiB);  // one vector at a time, never five
}

TEST(Accounting, PoolTasksAreChargedToTheSubmitter) {
  if (!accounting_enabled()) GTEST_SKIP() << "operator new replacement not active (sanitizer build)";
  pool::WorkerPool workers(2);
  MemoryAccount request;
  MemoryAccount stage;
  stage.parent = &request;
  {
    ScopedAccount scope(&stage);
    pool::TaskGroup group(workers);
    for (int i = 0; i < 4; ++i) {
      group.submit([] {
        std::vector<char> v(3 * kMiB, 'y');
        ASSERT_EQ(v[0], 'y');
      });
    }
    group.wait();
  }
  EXPECT_GE(stage.peak_bytes(), 3 * kMiB);
  EXPECT_GE(request.peak_bytes(), stage.peak_bytes());
}

TEST(Accounting, WithoutAnAccountNothingIsCharged) {
  if (!accounting_enabled()) GTEST_SKIP() << "operator new replacement not active (sanitizer build)";
  MemoryAccount a;
  auto block = std::make_unique<char[]>(kMiB);
  block[0] = 1;
  EXPECT_EQ(a.peak_bytes(), 0);
  EXPECT_EQ(current(), nullptr);
}

}  // namespace
}  // namespace pipelined::memory

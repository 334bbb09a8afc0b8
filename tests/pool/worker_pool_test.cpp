#include "daemon/pool/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "daemon/memory/memory_account.h"

namespace pipelined::pool {
namespace {

TEST(WorkerPool, RunsEveryTaskExactlyOnce) {
  constexpr int kTasks = 2000;
  std::vector<std::atomic<int>> runs(kTasks);
  {
    WorkerPool pool(4);
    for (int i = 0; i < kTasks; ++i) pool.submit([&runs, i] { runs[i].fetch_add(1); });
  }  // the destructor drains the queue before joining
  for (int i = 0; i < kTasks; ++i) ASSERT_EQ(runs[i].load(), 1) << "task " << i;
}

TEST(WorkerPool, ZeroThreadsMeansOne) {
  WorkerPool pool(0);
  EXPECT_EQ(pool.threads(), 1u);
}

TEST(WorkerPool, ThrowingTaskDoesNotKillTheWorker) {
  WorkerPool pool(1);
  std::atomic<bool> ran_after{false};
  pool.submit([] { throw std::runtime_error("boom"); });
  TaskGroup group(pool);
  group.submit([&] { ran_after = true; });
  group.wait();
  EXPECT_TRUE(ran_after);
}

// A pool thread that waits on its own group runs the group's tasks itself: with one thread,
// anything else would deadlock.
TEST(TaskGroup, WaitOnThePoolsOnlyThreadDoesNotDeadlock) {
  WorkerPool pool(1);
  std::atomic<int> inner{0};
  TaskGroup outer(pool);
  outer.submit([&] {
    TaskGroup group(pool);
    for (int i = 0; i < 10; ++i) group.submit([&] { inner.fetch_add(1); });
    group.wait();
  });
  outer.wait();
  EXPECT_EQ(inner.load(), 10);
}

TEST(TaskGroup, TasksSubmittedByRunningTasksAreWaitedFor) {
  WorkerPool pool(1);
  std::atomic<int> runs{0};
  TaskGroup group(pool);
  group.submit([&] {
    runs.fetch_add(1);
    group.submit([&] { runs.fetch_add(1); });
  });
  group.wait();
  EXPECT_EQ(runs.load(), 2);
}

TEST(TaskGroup, NestedGroupsOnASmallPool) {
  WorkerPool pool(2);
  std::atomic<int> leaves{0};
  TaskGroup top(pool);
  for (int i = 0; i < 8; ++i) {
    top.submit([&] {
      TaskGroup mid(pool);
      for (int j = 0; j < 8; ++j) {
        mid.submit([&] {
          TaskGroup leaf(pool);
          for (int k = 0; k < 4; ++k) leaf.submit([&] { leaves.fetch_add(1); });
        });  // leaf's destructor waits
      }
    });
  }
  top.wait();
  EXPECT_EQ(leaves.load(), 8 * 8 * 4);
}

TEST(TaskGroup, CarriesTheSubmittersMemoryAccount) {
  WorkerPool pool(2);
  memory::MemoryAccount account;
  std::atomic<memory::MemoryAccount*> seen_by_pool{nullptr};
  std::atomic<memory::MemoryAccount*> seen_by_group{nullptr};
  {
    memory::ScopedAccount scope(&account);
    TaskGroup group(pool);
    pool.submit([&] { seen_by_pool = memory::current(); });
    group.submit([&] { seen_by_group = memory::current(); });
    group.wait();
  }
  TaskGroup drain(pool);
  drain.submit([] {});
  drain.wait();
  while (seen_by_pool.load() == nullptr) std::this_thread::yield();
  EXPECT_EQ(seen_by_pool.load(), &account);
  EXPECT_EQ(seen_by_group.load(), &account);
}

}  // namespace
}  // namespace pipelined::pool

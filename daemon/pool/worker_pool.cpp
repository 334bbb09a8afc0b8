#include "daemon/pool/worker_pool.h"

#include <spdlog/spdlog.h>

#include <exception>

#include "daemon/memory/memory_account.h"

namespace pipelined::pool {
namespace {
// Tasks must not throw; one that does is logged and dropped so the worker survives.
void run_guarded(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    spdlog::error("worker pool: a task threw: {}", e.what());
  } catch (...) {
    spdlog::error("worker pool: a task threw a non-standard exception");
  }
}

// Wraps fn so it runs under the memory account that is current where it was submitted.
std::function<void()> with_submitters_account(std::function<void()> fn) {
  memory::MemoryAccount* account = memory::current();
  if (account == nullptr) return fn;
  return [account, fn = std::move(fn)] {
    memory::ScopedAccount scope(account);
    fn();
  };
}
}  // namespace

WorkerPool::WorkerPool(std::size_t threads) {
  if (threads == 0) threads = 1;
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void WorkerPool::submit(std::function<void()> fn) {
  auto task = with_submitters_account(std::move(fn));
  // Notified under the lock: a submitter on a thread the pool does not own (a plugin completing a
  // run) must be done with the pool once the destructor can take the lock.
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(task));
  cv_.notify_one();
}

std::size_t WorkerPool::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void WorkerPool::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    run_guarded(task);
  }
}

// A group keeps its own queue of not-yet-started tasks. Each submit also queues one "runner" on
// the pool that takes the oldest pending task, if any is left; wait() takes pending tasks itself,
// including ones that running tasks submit while it waits. Either way every task runs exactly
// once, and a waiter never sleeps while a task of its group could run on its own thread.
struct TaskGroup::State {
  std::mutex mu;
  std::condition_variable changed;  // a task was queued, or the last running one ended
  std::deque<std::function<void()>> pending;
  std::size_t running = 0;

  // Runs the oldest pending task; lock is held on entry and on return.
  void run_front(std::unique_lock<std::mutex>& lock) {
    std::function<void()> task = std::move(pending.front());
    pending.pop_front();
    ++running;
    lock.unlock();
    run_guarded(task);
    task = nullptr;  // destroy captures outside the lock
    lock.lock();
    if (--running == 0) changed.notify_all();
  }
};

TaskGroup::TaskGroup(WorkerPool& pool) : pool_(pool), state_(std::make_shared<State>()) {}

TaskGroup::~TaskGroup() { wait(); }

void TaskGroup::submit(std::function<void()> fn) {
  auto task = with_submitters_account(std::move(fn));
  {
    std::lock_guard lock(state_->mu);
    state_->pending.push_back(std::move(task));
  }
  state_->changed.notify_all();
  // The runner holds the state, not the group: it may start after the group is gone and find
  // nothing left to do.
  pool_.submit([state = state_] {
    std::unique_lock lock(state->mu);
    if (!state->pending.empty()) state->run_front(lock);
  });
}

void TaskGroup::wait() {
  std::unique_lock lock(state_->mu);
  for (;;) {
    if (!state_->pending.empty()) {
      state_->run_front(lock);
    } else if (state_->running == 0) {
      return;
    } else {
      state_->changed.wait(lock);
    }
  }
}

}  // namespace pipelined::pool

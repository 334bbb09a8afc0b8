// The daemon's shared worker pool: stage runs and the tasks plugins fan out run here.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace pipelined::pool {

class TaskGroup;

class WorkerPool {
 public:
  explicit WorkerPool(std::size_t threads);
  ~WorkerPool();  // runs what is queued, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues fn. The memory account of the submitting thread (memory::current()) is carried into it.
  void submit(std::function<void()> fn);

  std::size_t threads() const { return workers_.size(); }
  std::size_t queued() const;

 private:
  friend class TaskGroup;
  void worker_loop();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Tasks of one stage run. wait() runs the group's tasks that no worker has started yet on the
// calling thread, so a pool thread waiting on its own group cannot deadlock the pool.
class TaskGroup {
 public:
  explicit TaskGroup(WorkerPool& pool);
  ~TaskGroup();  // waits
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  void submit(std::function<void()> fn);
  void wait();

 private:
  struct State;
  WorkerPool& pool_;
  std::shared_ptr<State> state_;
};

}  // namespace pipelined::pool

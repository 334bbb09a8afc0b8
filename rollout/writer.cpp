#include "rollout/writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace pipelined::rollout {

RowWriter::RowWriter(std::string location, std::size_t capacity, std::chrono::milliseconds flush_interval)
    : location_(std::move(location)), capacity_(capacity), flush_interval_(flush_interval) {}

RowWriter::~RowWriter() { stop(); }

void RowWriter::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

void RowWriter::stop() {
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void RowWriter::push(RequestRecord record) { push_row(std::move(record)); }
void RowWriter::push(ShadowRecord record) { push_row(std::move(record)); }

void RowWriter::push_row(Row row) {
  std::lock_guard lock(mu_);
  if (queue_.size() >= capacity_ || stopping_) {
    ++(counters_.waiting ? counters_.lost_unavailable : counters_.lost_queue_full);
    return;
  }
  queue_.push_back(std::move(row));
  ++pushed_;
  if (queue_.size() == 512) wake_.notify_one();  // a full batch: no need to wait for the interval
}

void RowWriter::flush() {
  std::unique_lock lock(mu_);
  if (!started_) return;
  const std::uint64_t target = pushed_;
  wake_.notify_one();
  flushed_.wait(lock, [&] { return done_ >= target || counters_.waiting; });
}

WriterCounters RowWriter::counters() const {
  std::lock_guard lock(mu_);
  WriterCounters c = counters_;
  c.queued = pushed_ - done_;  // the queue and the batch being written: what a SIGKILL would lose
  return c;
}

void RowWriter::run() {
  auto retry_in = std::chrono::milliseconds(250);
  for (;;) {
    std::vector<Row> batch;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      if (counters_.waiting)
        wake_.wait_for(lock, retry_in, [this] { return stopping_; });
      else
        wake_.wait_for(lock, flush_interval_, [this] { return stopping_ || queue_.size() >= 512 || done_ < pushed_; });
      stop = stopping_;
      const std::size_t n = std::min<std::size_t>(queue_.size(), 4096);
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const bool written = batch.empty() || write(batch, stop);
    std::lock_guard lock(mu_);
    if (!written) {  // back to the front, in order, to wait for the server
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
      if (!counters_.waiting) spdlog::warn("metrics writer: {} unreachable; rows wait in the queue (at most {})", db_name(), capacity_);
      counters_.waiting = true;
      retry_in = std::min(retry_in * 2, std::chrono::milliseconds(2000));
      flushed_.notify_all();
      continue;
    }
    if (counters_.waiting) spdlog::info("metrics writer: {} reachable again; writing the {} queued rows", db_name(), queue_.size());
    counters_.waiting = false;
    retry_in = std::chrono::milliseconds(250);
    done_ += batch.size();
    flushed_.notify_all();
    if (stop && queue_.empty()) break;
  }
}

std::string RowWriter::db_name() const { return db_ ? db_->name() : location_; }

// A batch is written in one transaction. A locked database is retried a few times; an unreachable
// server keeps the batch for later unless the writer is stopping; what still cannot be written is
// counted by cause and dropped: no request ever waits on, or fails with, the database.
bool RowWriter::write(std::vector<Row>& batch, bool last_chance) {
  using Cause = DatabaseError::Cause;
  Cause loss = Cause::Unavailable;
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      if (db_ && db_->stale()) {
        spdlog::warn("metrics writer: {} was removed or replaced; reopening it", db_->name());
        db_.reset();
      }
      // A SQLite file removed under the writer is not created again (the controller's own
      // connection still reads the old one): until it is back, rows are lost.
      if (!db_) db_ = open_database(location_, opened_ ? OpenMode::MustExist : OpenMode::Create);
      opened_ = true;
      db_->insert(batch);
      std::lock_guard lock(mu_);
      counters_.written += batch.size();
      return true;
    } catch (const DatabaseError& e) {
      loss = e.cause;
      if (loss != Cause::Locked) db_.reset();
      if (loss == Cause::Unreachable && !last_chance) return false;
      spdlog::warn("metrics writer: {} rows not written: {}", batch.size(), e.what());
      if (loss != Cause::Locked) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50 << attempt));
    } catch (const std::exception& e) {
      db_.reset();
      spdlog::warn("metrics writer: {} rows lost: {}", batch.size(), e.what());
      break;
    }
  }
  std::lock_guard lock(mu_);
  switch (loss) {
    case Cause::Locked:
      counters_.lost_locked += batch.size();
      break;
    case Cause::DiskFull:
      counters_.lost_disk_full += batch.size();
      break;
    default:
      counters_.lost_unavailable += batch.size();
      break;
  }
  return true;
}

}  // namespace pipelined::rollout

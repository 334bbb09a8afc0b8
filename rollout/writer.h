// The batched row writer: its own connection and thread; a request only pushes onto its bounded
// queue and never waits on, or fails with, the database. While a database server is unreachable
// (PostgreSQL) the rows wait in the queue; what the full queue then turns away is counted lost as
// unavailable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "rollout/database.h"
#include "rollout/records.h"

namespace pipelined::rollout {

struct WriterCounters {
  std::uint64_t written = 0;
  std::uint64_t lost_queue_full = 0;  // queue at capacity: the writer could not keep up
  std::uint64_t lost_locked = 0;      // database locked by another process past the retries
  std::uint64_t lost_disk_full = 0;
  std::uint64_t lost_unavailable = 0;  // database could not be opened, read-only, corrupt, I/O error, unreachable
  std::size_t queued = 0;  // accepted and not written yet: the queue and the batch being written
  bool waiting = false;  // the database server is unreachable: rows wait in the queue
  std::uint64_t lost() const { return lost_queue_full + lost_locked + lost_disk_full + lost_unavailable; }
};

class RowWriter {
 public:
  // `location`: a SQLite path or a postgresql:// URL (open_database).
  RowWriter(std::string location, std::size_t capacity, std::chrono::milliseconds flush_interval);
  ~RowWriter();  // stop()

  void start();
  // Writes every queued row, then joins. Idempotent.
  void stop();

  // Never blocks on disk: a full queue drops the row and counts it.
  void push(RequestRecord record);
  void push(ShadowRecord record);

  // Blocks until what was queued before the call is written (or counted lost), or until the
  // writer waits for an unreachable server; for tests and for the report, which reads the database.
  void flush();

  WriterCounters counters() const;

 private:
  using Row = WriterRow;
  void push_row(Row row);
  void run();
  // false: the server is unreachable and the batch is to be written later.
  bool write(std::vector<Row>& batch, bool last_chance);
  std::string db_name() const;

  std::string location_;
  std::size_t capacity_;
  std::chrono::milliseconds flush_interval_;
  mutable std::mutex mu_;
  std::condition_variable wake_, flushed_;
  std::deque<Row> queue_;
  bool stopping_ = false;
  bool started_ = false;
  std::uint64_t pushed_ = 0, done_ = 0;  // rows accepted, rows written or lost
  WriterCounters counters_;
  std::unique_ptr<Database> db_;
  bool opened_ = false;  // db_ was opened once: a SQLite file removed since is not created again
  std::thread thread_;
};

}  // namespace pipelined::rollout

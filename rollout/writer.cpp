#include "rollout/writer.h"

#include <SQLiteCpp/VariadicBind.h>
#include <sqlite3.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "rollout/columns.h"
#include "rollout/store.h"

namespace pipelined::rollout {

RowWriter::RowWriter(std::string path, std::size_t capacity, std::chrono::milliseconds flush_interval)
    : path_(std::move(path)), capacity_(capacity), flush_interval_(flush_interval) {}

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
    ++counters_.lost_queue_full;
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
  flushed_.wait(lock, [&] { return done_ >= target; });
}

WriterCounters RowWriter::counters() const {
  std::lock_guard lock(mu_);
  WriterCounters c = counters_;
  c.queued = queue_.size();
  return c;
}

void RowWriter::run() {
  for (;;) {
    std::vector<Row> batch;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, flush_interval_, [this] { return stopping_ || queue_.size() >= 512 || done_ < pushed_; });
      stop = stopping_;
      const std::size_t n = std::min<std::size_t>(queue_.size(), 4096);
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!batch.empty()) write(batch);
    {
      std::lock_guard lock(mu_);
      done_ += batch.size();
      flushed_.notify_all();
      if (stop && queue_.empty()) break;
    }
  }
}

namespace {

enum class Loss { None, Locked, DiskFull, Unavailable };

// Whether an I/O error is a full disk by another name: SQLite reports a write that failed with
// EFBIG (a file size limit) or EDQUOT as a plain I/O error, and its errno is gone by the time the
// exception is caught. So look: no free blocks, or a database file at the file size limit.
bool out_of_room(const std::string& path) {
  struct statvfs fs {};
  if (::statvfs(path.c_str(), &fs) == 0 && fs.f_bavail == 0) return true;
  rlimit limit{};
  if (::getrlimit(RLIMIT_FSIZE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return false;
  for (const char* suffix : {"", "-wal", "-journal"}) {
    struct stat st {};
    if (::stat((path + suffix).c_str(), &st) == 0 && static_cast<rlim_t>(st.st_size) >= limit.rlim_cur) return true;
  }
  return false;
}

Loss classify(int code, const std::string& path) {
  if ((code & 0xFF) == SQLITE_IOERR && out_of_room(path)) return Loss::DiskFull;
  switch (code & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Loss::Locked;
    case SQLITE_FULL:
      return Loss::DiskFull;
    default:
      return Loss::Unavailable;
  }
}

void insert(SQLite::Database& db, const std::vector<std::variant<RequestRecord, ShadowRecord>>& batch) {
  SQLite::Statement request(db, request_insert_sql());
  SQLite::Statement stage(db,
                          "INSERT INTO stage_runs (request, stage, variant, plugin_version, start_us, duration_us, status, "
                          "attempts, error_class, peak_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  SQLite::Statement shadow(db,
                           "INSERT INTO shadow_results (time_ms, request_id, pipeline, rollout_id, candidate_ok, matched, "
                           "first_difference, stable_latency_us, candidate_latency_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  SQLite::Transaction t(db);
  for (const auto& row : batch) {
    if (const auto* r = std::get_if<RequestRecord>(&row)) {
      request.reset();
      int index = 1;
      for (const auto& column : request_columns()) column.bind(request, index++, *r);
      request.exec();
      const std::int64_t id = db.getLastInsertRowid();
      for (const auto& s : r->stages) {
        stage.reset();
        SQLite::bind(stage, id, s.stage, s.variant, s.plugin_version, s.start_us, s.duration_us, s.status, s.attempts, s.error_class,
                     s.peak_bytes);
        stage.exec();
      }
    } else {
      const auto& s = std::get<ShadowRecord>(row);
      shadow.reset();
      SQLite::bind(shadow, s.time_ms, s.request_id, s.pipeline, s.rollout_id, s.candidate_ok ? 1 : 0, s.matched ? 1 : 0, s.first_difference,
                   s.stable_latency_us, s.candidate_latency_us);
      shadow.exec();
    }
  }
  t.commit();
}

}  // namespace

// A batch is written in one transaction. A locked database is retried a few times; what still
// cannot be written is counted by cause and dropped: no request ever waits on, or fails with, the
// database.
void RowWriter::write(std::vector<Row>& batch) {
  Loss loss = Loss::None;
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      // A database file removed or replaced under the open connection: writing on would go to an
      // inode no one reads, counted as written. Reopen the path, but do not create it again (the
      // controller's own connection still reads the old one): until it is back, rows are lost.
      struct stat st {};
      const bool present = ::stat(path_.c_str(), &st) == 0;
      if (db_ && (!present || st.st_dev != db_device_ || st.st_ino != db_inode_)) {
        spdlog::warn("metrics writer: {} was removed or replaced; reopening it", path_);
        db_.reset();
      }
      if (!db_) {
        if (opened_ && !present) throw std::runtime_error("metrics database " + path_ + " was removed (rows are lost until it is back)");
        db_ = open_database(path_);
        opened_ = true;
        if (::stat(path_.c_str(), &st) == 0) {
          db_device_ = st.st_dev;
          db_inode_ = st.st_ino;
        }
      }
      insert(*db_, batch);
      std::lock_guard lock(mu_);
      counters_.written += batch.size();
      return;
    } catch (const SQLite::Exception& e) {
      loss = classify(e.getErrorCode(), path_);
      spdlog::warn("metrics writer: {} rows not written yet: {}", batch.size(), e.what());
      if (loss != Loss::Locked) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50 << attempt));
    } catch (const std::exception& e) {
      loss = Loss::Unavailable;
      db_.reset();
      spdlog::warn("metrics writer: {} rows lost: {}", batch.size(), e.what());
      break;
    }
  }
  std::lock_guard lock(mu_);
  switch (loss) {
    case Loss::Locked:
      counters_.lost_locked += batch.size();
      break;
    case Loss::DiskFull:
      counters_.lost_disk_full += batch.size();
      break;
    default:
      counters_.lost_unavailable += batch.size();
      break;
  }
}

}  // namespace pipelined::rollout

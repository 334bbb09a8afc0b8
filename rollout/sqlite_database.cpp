// The SQLite engine (SQLiteCpp): one file in WAL mode, the schema version in PRAGMA user_version.
#include <SQLiteCpp/SQLiteCpp.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <filesystem>

#include "rollout/columns.h"
#include "rollout/database.h"

namespace pipelined::rollout {

namespace {

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

DatabaseError classify(const SQLite::Exception& e, const std::string& path) {
  using Cause = DatabaseError::Cause;
  const std::string what = "metrics database " + path + ": " + e.what();
  const int code = e.getErrorCode() & 0xFF;
  if (code == SQLITE_IOERR && out_of_room(path)) return {Cause::DiskFull, what};
  switch (code) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return {Cause::Locked, what};
    case SQLITE_FULL:
      return {Cause::DiskFull, what};
    default:
      return {Cause::Unavailable, what};
  }
}

class SqliteRow final : public SqlRow {
 public:
  explicit SqliteRow(SQLite::Statement& q) : q_(q) {}
  std::int64_t integer(int c) const override { return q_.getColumn(c).getInt64(); }
  double real(int c) const override { return q_.getColumn(c).getDouble(); }
  std::string text(int c) const override { return q_.getColumn(c).getString(); }

 private:
  SQLite::Statement& q_;
};

void bind(SQLite::Statement& q, int index, const SqlValue& v) {
  std::visit([&](const auto& x) { q.bind(index, x); }, v);
}

class SqliteDatabase final : public Database {
 public:
  SqliteDatabase(const std::string& path, OpenMode mode) : path_(path) {
    try {
      if (mode == OpenMode::Create) {
        std::error_code ec;
        const auto parent = std::filesystem::path(path).parent_path();
        if (!parent.empty()) std::filesystem::create_directories(parent, ec);
      }
      const int flags = SQLite::OPEN_READWRITE | SQLite::OPEN_FULLMUTEX | (mode == OpenMode::Create ? SQLite::OPEN_CREATE : 0);
      db_ = std::make_unique<SQLite::Database>(path, flags);
      db_->setBusyTimeout(200);
      db_->exec("PRAGMA journal_mode=WAL");
      db_->exec("PRAGMA synchronous=NORMAL");
      db_->exec("PRAGMA foreign_keys=ON");
      remember_file();
    } catch (const SQLite::Exception& e) {
      throw classify(e, path);
    }
    migrate();
  }

  const std::string& name() const override { return path_; }
  bool shared() const override { return false; }

  void query(const std::string& sql, const std::vector<SqlValue>& params, const std::function<void(const SqlRow&)>& row) override {
    try {
      SQLite::Statement q(*db_, sql);
      for (std::size_t i = 0; i < params.size(); ++i) bind(q, static_cast<int>(i) + 1, params[i]);
      const SqliteRow r(q);
      while (q.executeStep())
        if (row) row(r);
    } catch (const SQLite::Exception& e) {
      throw classify(e, path_);
    }
  }

  void transaction(const std::function<void()>& body) override {
    try {
      SQLite::Transaction t(*db_);
      body();
      t.commit();
    } catch (const SQLite::Exception& e) {
      throw classify(e, path_);
    }
  }

  // A database file removed or replaced under the open connection: writing on would go to an
  // inode no one reads, counted as written.
  bool stale() const override {
    struct stat st {};
    return ::stat(path_.c_str(), &st) != 0 || st.st_dev != device_ || st.st_ino != inode_;
  }

  void insert(const std::vector<WriterRow>& batch) override {
    try {
      SQLite::Statement request(*db_, request_insert_sql());
      SQLite::Statement stage(*db_, insert_sql("stage_runs", stage_run_columns()));
      SQLite::Statement shadow(*db_, insert_sql("shadow_results", shadow_columns()));
      auto run = [](SQLite::Statement& q, const std::vector<SqlValue>& values) {
        q.reset();
        for (std::size_t i = 0; i < values.size(); ++i) bind(q, static_cast<int>(i) + 1, values[i]);
        q.exec();
      };
      SQLite::Transaction t(*db_);
      for (const auto& row : batch) {
        if (const auto* r = std::get_if<RequestRecord>(&row)) {
          std::vector<SqlValue> values;
          for (const auto& column : request_columns()) values.push_back(column.value(*r));
          run(request, values);
          const std::int64_t id = db_->getLastInsertRowid();
          for (const auto& s : r->stages) run(stage, stage_run_values(id, s));
        } else {
          run(shadow, shadow_values(std::get<ShadowRecord>(row)));
        }
      }
      t.commit();
    } catch (const SQLite::Exception& e) {
      throw classify(e, path_);
    }
  }

 private:
  void migrate() {
    const int newest = migrations().empty() ? 0 : migrations().back().version;
    int version = 0;
    try {
      version = db_->execAndGet("PRAGMA user_version").getInt();
    } catch (const SQLite::Exception& e) {
      throw classify(e, path_);
    }
    if (version > newest) {
      throw DatabaseError(DatabaseError::Cause::Unavailable,
                          "metrics database " + path_ + " has schema version " + std::to_string(version) + ", newer than this binary's " +
                              std::to_string(newest) + "; run the newer pipelined, or move the database aside");
    }
    for (const auto& m : migrations()) {
      if (m.version <= version) continue;
      try {
        SQLite::Transaction t(*db_);
        db_->exec(m.sql);
        db_->exec("PRAGMA user_version = " + std::to_string(m.version));
        t.commit();
        version = m.version;
        spdlog::info("metrics database {}: applied migration {:03}_{}", path_, m.version, m.name);
      } catch (const SQLite::Exception& e) {
        throw DatabaseError(DatabaseError::Cause::Unavailable, "metrics database " + path_ + ": migration " + std::to_string(m.version) +
                                                                   "_" + m.name + " failed: " + e.what());
      }
    }
  }

  void remember_file() {
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0) {
      device_ = st.st_dev;
      inode_ = st.st_ino;
    }
  }

  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
  std::uint64_t device_ = 0, inode_ = 0;
};

}  // namespace

std::unique_ptr<Database> open_sqlite(const std::string& path, OpenMode mode) { return std::make_unique<SqliteDatabase>(path, mode); }

}  // namespace pipelined::rollout

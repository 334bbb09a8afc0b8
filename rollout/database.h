// The metrics database behind one small interface, on two engines: SQLite (a file path, the
// embedded default for one machine) and PostgreSQL (a postgresql:// URL, shared by replicas). The
// store (store.h) and the row writer (writer.h) are written once against it; what differs between
// the engines (placeholders, identity columns, bulk insert, migrations' bookkeeping, the lease and
// change notifications replicas need) lives in sqlite_database.cpp and postgres_database.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "rollout/records.h"

namespace pipelined::rollout {

using SqlValue = std::variant<std::int64_t, double, std::string>;

// One result row; columns by 0-based index. A NULL reads as 0 or "".
class SqlRow {
 public:
  virtual ~SqlRow() = default;
  virtual std::int64_t integer(int column) const = 0;
  virtual double real(int column) const = 0;
  virtual std::string text(int column) const = 0;
};

// What a failed database call means for the rows at stake.
struct DatabaseError : std::runtime_error {
  enum class Cause {
    Locked,       // another writer holds the database: worth retrying soon
    DiskFull,     // no room (SQLITE_FULL, a file size limit, PostgreSQL's disk_full class)
    Unreachable,  // the server cannot be reached or the connection broke: rows wait for it
    Unavailable,  // cannot be opened, read-only, corrupt, I/O error, a refused statement
  };
  DatabaseError(Cause c, const std::string& what) : std::runtime_error(what), cause(c) {}
  Cause cause;
};

// Tells a replica that another one changed the rollout state (PostgreSQL LISTEN/NOTIFY).
class ChangeListener {
 public:
  virtual ~ChangeListener() = default;
  // Waits up to `timeout` for a notification; true when one came. Throws DatabaseError when the
  // connection is gone (the caller makes a new listener later).
  virtual bool wait(std::chrono::milliseconds timeout) = 0;
};

using WriterRow = std::variant<RequestRecord, ShadowRecord>;

// One connection. Not thread-safe: each user (the store, the writer) has its own. Every call
// throws DatabaseError.
class Database {
 public:
  virtual ~Database() = default;

  // The path or URL, without a password: for messages.
  virtual const std::string& name() const = 0;
  virtual bool shared() const = 0;  // PostgreSQL: other replicas may use it too

  // Runs one statement with `?` placeholders bound to `params` in order, calling `row` for each
  // result row.
  virtual void query(const std::string& sql, const std::vector<SqlValue>& params = {},
                     const std::function<void(const SqlRow&)>& row = {}) = 0;
  // Runs `body` in one transaction: committed when it returns, rolled back when it throws.
  virtual void transaction(const std::function<void()>& body) = 0;
  // The connection no longer reaches what name() names (SQLite: the file was removed or replaced
  // under it): the writer opens it again.
  virtual bool stale() const { return false; }
  // Inserts the writer's rows (requests with their stage runs, shadow results) in one transaction.
  virtual void insert(const std::vector<WriterRow>& batch) = 0;

  // Replicas. Tells every listener the rollout state changed; inside transaction(), when it
  // commits. SQLite: nothing (one daemon per file).
  virtual void notify_change() {}
  // Whether this connection holds the lease that makes its replica the one deciding guardrails and
  // steps, taking it when free. It is held until the connection closes. SQLite: always.
  virtual bool hold_lease() { return true; }
  // A listener on a connection of its own; nullptr where there is nothing to listen to (SQLite).
  virtual std::unique_ptr<ChangeListener> listen() { return nullptr; }
};

enum class OpenMode { Create, MustExist };

// `location` is a SQLite file path or a postgresql:// (postgres://) URL. Opens the database and
// applies pending migrations (migrations/NNN_name.sql, the same files on both engines), each in its
// own transaction; PostgreSQL's are serialised across replicas by an advisory lock. Throws
// DatabaseError naming the database when it is newer than this binary or cannot be opened or
// migrated. MustExist: a SQLite file that is missing is not created again (the writer reopening a
// file removed under it).
std::unique_ptr<Database> open_database(const std::string& location, OpenMode mode = OpenMode::Create);

bool is_postgresql_url(const std::string& location);

// The engines; open_database() picks one.
std::unique_ptr<Database> open_sqlite(const std::string& path, OpenMode mode);
std::unique_ptr<Database> open_postgresql(const std::string& url);

struct Migration {
  int version;
  const char* name;
  const char* sql;
};
// migrations/NNN_name.sql, embedded at build time, in version order. Written in SQLite's dialect
// with INTEGER for every integer; postgresql_dialect() makes PostgreSQL's from it.
const std::vector<Migration>& migrations();
// INTEGER PRIMARY KEY -> BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, INTEGER -> BIGINT.
std::string postgresql_dialect(const std::string& sqlite_sql);

}  // namespace pipelined::rollout

// Thin RAII layer over one SQLite connection: cached prepared statements, binding, stepping
// and mapping SQLite result codes to absl::Status. Not thread-safe: Store serializes access.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pgward::store {

// Maps an SQLite (extended) result code to a canonical status. Constraint violations become
// ALREADY_EXISTS (unique/primary key) or FAILED_PRECONDITION (foreign key, check); a busy
// database becomes UNAVAILABLE so callers may retry.
absl::Status SqliteStatus(int rc, sqlite3* db, std::string_view context);

// One use of a cached prepared statement. Resets and clears its bindings when destroyed, so
// the next user of the same SQL starts clean. Bind errors are kept and reported by Step().
class Statement {
 public:
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  Statement(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  // Parameters are 1-based, as in sqlite3_bind_*.
  Statement& BindText(int index, std::string_view value);
  // Binds without copying: `value` must stay alive and unchanged until this Statement is
  // destroyed (which resets it). For hot loops binding fields of objects that outlive the
  // statement, e.g. the audit writer's events (two fewer allocations per string).
  Statement& BindTextUnowned(int index, std::string_view value);
  Statement& BindBlob(int index, std::string_view value);
  Statement& BindInt(int index, int64_t value);

  // true: a row is available; false: the statement is done.
  absl::StatusOr<bool> Step();
  // Steps to completion, ignoring rows.
  absl::Status Run();

  std::string Text(int column) const;
  std::string Blob(int column) const;
  int64_t Int(int column) const;
  bool IsNull(int column) const;

 private:
  void Check(int rc);

  sqlite3_stmt* stmt_;
  sqlite3* db_;
  int bind_error_ = SQLITE_OK;
};

class SqliteDb {
 public:
  // Opens (creating if needed) the database file with mode 0600 — it holds token hashes and
  // sealed passwords — and applies the connection pragmas: WAL, busy_timeout, foreign_keys.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more SQL statements without results (DDL, BEGIN/COMMIT, pragmas).
  absl::Status Exec(std::string_view sql);
  // Returns the cached prepared statement for `sql`, preparing it on first use. A statement
  // must not be used twice at once: finish iterating before preparing the same SQL again.
  absl::StatusOr<Statement> Prepare(const std::string& sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int Changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() const { return db_; }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  absl::flat_hash_map<std::string, sqlite3_stmt*> cache_;
};

// Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back if it returns an error.
// IMMEDIATE takes the write lock up front so a transaction never fails half-way with BUSY.
template <typename Body>
absl::Status InTransaction(SqliteDb& db, Body&& body) {
  if (absl::Status s = db.Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  absl::Status result = body();
  if (!result.ok()) {
    (void)db.Exec("ROLLBACK");
    return result;
  }
  if (absl::Status s = db.Exec("COMMIT"); !s.ok()) {
    (void)db.Exec("ROLLBACK");
    return s;
  }
  return absl::OkStatus();
}

}  // namespace pgward::store

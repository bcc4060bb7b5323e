// The ordered schema migrations of the gateway store and the code that applies them.
#pragma once

#include <span>

#include "absl/status/statusor.h"
#include "gateway/store/sqlite_db.h"

namespace pgward::store {

struct Migration {
  int version;          // 1, 2, ... in order, never reused or edited once released
  const char* summary;  // for logs
  const char* sql;
};

// All known migrations, oldest first. Append new steps; never change a released one.
std::span<const Migration> Migrations();
int LatestSchemaVersion();

// Brings the database to LatestSchemaVersion() in one transaction and returns the version.
// Refuses (FAILED_PRECONDITION) a database whose recorded version is newer than this binary
// knows: an older gateway must not write to a schema it does not understand.
absl::StatusOr<int> ApplyMigrations(SqliteDb& db, int64_t now_unix_ms);

}  // namespace pgward::store

// Schema migrations for the gateway store: see migrations.h.
#include "gateway/store/migrations.h"

#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace pgward::store {
namespace {

// Version 1: the control-plane configuration. Connections refer to their agent (an agent in
// use cannot be deleted); grants belong to a connection and go with it. The grant policy is
// the serialized pgward.v1.Policy so new policy fields need no migration.
constexpr char kV1[] = R"sql(
CREATE TABLE agents (
  name TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  last_seen_unix_ms INTEGER NOT NULL DEFAULT 0,
  version TEXT NOT NULL DEFAULT '',
  peer TEXT NOT NULL DEFAULT ''
);
CREATE TABLE connections (
  name TEXT PRIMARY KEY,
  agent TEXT NOT NULL REFERENCES agents(name) ON DELETE RESTRICT,
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  database TEXT NOT NULL,
  user TEXT NOT NULL,
  password_ref TEXT NOT NULL,
  sslmode TEXT NOT NULL,
  ca_file TEXT NOT NULL DEFAULT '',
  sealed_password BLOB NOT NULL DEFAULT x'',
  created_unix_ms INTEGER NOT NULL
);
CREATE INDEX connections_agent ON connections(agent);
CREATE TABLE grants (
  id TEXT PRIMARY KEY,
  principal TEXT NOT NULL DEFAULT '',
  group_name TEXT NOT NULL DEFAULT '',
  issuer TEXT NOT NULL DEFAULT '',
  connection TEXT NOT NULL REFERENCES connections(name) ON DELETE CASCADE,
  policy BLOB NOT NULL,
  expires_unix_ms INTEGER NOT NULL DEFAULT 0,
  created_unix_ms INTEGER NOT NULL,
  created_by TEXT NOT NULL DEFAULT '',
  CHECK ((principal = '') <> (group_name = ''))
);
CREATE INDEX grants_connection ON grants(connection);
CREATE INDEX grants_principal ON grants(principal);
CREATE INDEX grants_group ON grants(group_name);
)sql";

// Version 2: sessions and the per-statement audit. No foreign keys to connections: the
// audit trail must outlive a deleted connection. (agent, boot_id, seq) makes event inserts
// idempotent across agent reconnects. The indexes serve the ListSessions/ListAudit filters.
constexpr char kV2[] = R"sql(
CREATE TABLE sessions (
  session_id TEXT PRIMARY KEY,
  principal TEXT NOT NULL,
  issuer TEXT NOT NULL,
  connection TEXT NOT NULL,
  agent TEXT NOT NULL,
  client_addr TEXT NOT NULL,
  application_name TEXT NOT NULL,
  caller_user TEXT NOT NULL,
  started_unix_ms INTEGER NOT NULL,
  ended_unix_ms INTEGER NOT NULL DEFAULT 0,
  end_reason TEXT NOT NULL DEFAULT '',
  statements INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_started ON sessions(started_unix_ms);
CREATE INDEX sessions_principal ON sessions(principal, started_unix_ms);
CREATE INDEX sessions_connection ON sessions(connection, started_unix_ms);
CREATE INDEX sessions_open ON sessions(ended_unix_ms) WHERE ended_unix_ms = 0;
CREATE TABLE statement_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent TEXT NOT NULL,
  boot_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  session_id TEXT NOT NULL,
  time_unix_us INTEGER NOT NULL,
  protocol TEXT NOT NULL,
  statement TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  command_tag TEXT NOT NULL,
  rows INTEGER NOT NULL,
  sqlstate TEXT NOT NULL,
  error TEXT NOT NULL,
  duration_us INTEGER NOT NULL,
  decision TEXT NOT NULL,
  rule TEXT NOT NULL,
  reviewer TEXT NOT NULL,
  UNIQUE (agent, boot_id, seq)
);
CREATE INDEX statement_events_time ON statement_events(time_unix_us);
CREATE INDEX statement_events_session ON statement_events(session_id, time_unix_us);
)sql";

// Version 3: revocations. kind is 'principal' or 'group'; names are issuer-scoped as in grants.
// A row means revoked; restoring deletes it (the gateway log keeps who restored it).
constexpr char kV3[] = R"sql(
CREATE TABLE revocations (
  kind TEXT NOT NULL CHECK (kind IN ('principal', 'group')),
  issuer TEXT NOT NULL,
  name TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  revoked_by TEXT NOT NULL DEFAULT '',
  revoked_unix_ms INTEGER NOT NULL,
  PRIMARY KEY (kind, issuer, name)
);
)sql";

// Version 4: agent token rotation. The token an agent had before its last rotation keeps
// working until previous_token_expires_unix_ms (0: not at all).
constexpr char kV4[] = R"sql(
ALTER TABLE agents ADD COLUMN previous_token_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN previous_token_expires_unix_ms INTEGER NOT NULL DEFAULT 0;
)sql";

// Version 5: the identity provider's revocation events (RFC 8935 push of CAEP/RISC SETs).
// Tokens of (issuer, subject) issued before not_before_unix are refused; the latest event wins.
constexpr char kV5[] = R"sql(
CREATE TABLE subject_cutoffs (
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  not_before_unix INTEGER NOT NULL,
  event TEXT NOT NULL,
  received_unix_ms INTEGER NOT NULL,
  PRIMARY KEY (issuer, subject)
) WITHOUT ROWID;
)sql";

// Version 6: each statement's outcome (ok | error | unknown: its result never came back, the
// caller or the agent went away while it ran). Earlier rows get ok or error from their sqlstate.
constexpr char kV6[] = R"sql(
ALTER TABLE statement_events ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
UPDATE statement_events SET outcome = CASE WHEN sqlstate = '' THEN 'ok' ELSE 'error' END;
)sql";

constexpr Migration kMigrations[] = {
    {1, "agents, connections, grants", kV1},
    {2, "sessions and statement audit", kV2},
    {3, "revoked principals and groups", kV3},
    {4, "agent token rotation", kV4},
    {5, "identity provider revocation events", kV5},
    {6, "statement outcome", kV6},
};

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

int LatestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

absl::StatusOr<int> ApplyMigrations(SqliteDb& db, int64_t now_unix_ms) {
  int version = 0;
  absl::Status status = InTransaction(db, [&]() -> absl::Status {
    if (absl::Status s = db.Exec(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
        !s.ok()) {
      return s;
    }
    absl::StatusOr<Statement> current =
        db.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (!current.ok()) return current.status();
    absl::StatusOr<bool> row = current->Step();
    if (!row.ok()) return row.status();
    version = static_cast<int>(current->Int(0));
    if (version > LatestSchemaVersion()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database schema version ", version, " is newer than this build supports (",
          LatestSchemaVersion(), "); run a newer pgward-gateway"));
    }
    for (const Migration& m : kMigrations) {
      if (m.version <= version) continue;
      if (absl::Status s = db.Exec(m.sql); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("migration ", m.version, ": ", s.message()));
      }
      absl::StatusOr<Statement> record =
          db.Prepare("INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)");
      if (!record.ok()) return record.status();
      record->BindInt(1, m.version).BindInt(2, now_unix_ms);
      if (absl::Status s = record->Run(); !s.ok()) return s;
      Log(LogLevel::kInfo, "store", "applied schema migration ", m.version, " (", m.summary, ")");
      version = m.version;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return version;
}

}  // namespace pgward::store

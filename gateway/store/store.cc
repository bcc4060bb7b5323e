// Store: opening, agents, connections and grants. Sessions and audit are in store_audit.cc.
#include "gateway/store/store.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/crypto/token_hash.h"
#include "gateway/store/migrations.h"

namespace pgward::store {
namespace {

int64_t NowUnixMs() { return absl::ToUnixMillis(absl::Now()); }

constexpr char kConnectionColumns[] =
    "name, agent, host, port, database, user, password_ref, sslmode, ca_file, created_unix_ms";

pgward::v1::Connection ReadConnection(const Statement& row) {
  pgward::v1::Connection c;
  c.set_name(row.Text(0));
  c.set_agent(row.Text(1));
  c.set_host(row.Text(2));
  c.set_port(static_cast<uint32_t>(row.Int(3)));
  c.set_database(row.Text(4));
  c.set_user(row.Text(5));
  c.set_password_ref(row.Text(6));
  c.set_sslmode(row.Text(7));
  c.set_ca_file(row.Text(8));
  c.set_created_unix_ms(row.Int(9));
  return c;
}

constexpr char kGrantColumns[] =
    "id, principal, group_name, issuer, connection, policy, expires_unix_ms, created_unix_ms, "
    "created_by";

absl::StatusOr<pgward::v1::Grant> ReadGrant(const Statement& row) {
  pgward::v1::Grant g;
  g.set_id(row.Text(0));
  g.set_principal(row.Text(1));
  g.set_group(row.Text(2));
  g.set_issuer(row.Text(3));
  g.set_connection(row.Text(4));
  if (!g.mutable_policy()->ParseFromString(row.Blob(5))) {
    return absl::DataLossError(absl::StrCat("grant ", g.id(), " has an unreadable policy"));
  }
  g.set_expires_unix_ms(row.Int(6));
  g.set_created_unix_ms(row.Int(7));
  g.set_created_by(row.Text(8));
  return g;
}

// Reads every row of a grant query.
absl::StatusOr<std::vector<pgward::v1::Grant>> ReadGrants(Statement& stmt) {
  std::vector<pgward::v1::Grant> grants;
  while (true) {
    absl::StatusOr<bool> row = stmt.Step();
    if (!row.ok()) return row.status();
    if (!*row) return grants;
    absl::StatusOr<pgward::v1::Grant> g = ReadGrant(stmt);
    if (!g.ok()) return g.status();
    grants.push_back(*std::move(g));
  }
}

// Runs `min_query` (a SELECT MIN(...) with one parameter, `after`): the earliest time it finds.
absl::StatusOr<std::optional<int64_t>> FirstTimeAfter(SqliteDb& db, const char* min_query, int64_t after) {
  absl::StatusOr<Statement> q = db.Prepare(min_query);
  if (!q.ok()) return q.status();
  q->BindInt(1, after);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row || q->IsNull(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(q->Int(0));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
  if (!db.ok()) return db.status();
  absl::StatusOr<int> version = ApplyMigrations(**db, NowUnixMs());
  if (!version.ok()) return version.status();
  return std::unique_ptr<Store>(new Store(*std::move(db), *version));
}

absl::Status Store::AgentExistsLocked(const std::string& name) {
  absl::StatusOr<Statement> q = db_->Prepare("SELECT 1 FROM agents WHERE name = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, name);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("agent ", name, " not found"));
  return absl::OkStatus();
}

absl::Status Store::ConnectionExistsLocked(const std::string& name) {
  absl::StatusOr<Statement> q = db_->Prepare("SELECT 1 FROM connections WHERE name = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, name);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("connection ", name, " not found"));
  return absl::OkStatus();
}

// --- agents

absl::Status Store::CreateAgent(const std::string& name, const std::string& token_hash) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      "INSERT INTO agents(name, token_hash, created_unix_ms) VALUES (?, ?, ?)");
  if (!q.ok()) return q.status();
  q->BindText(1, name).BindText(2, token_hash).BindInt(3, NowUnixMs());
  absl::Status s = q->Run();
  if (absl::IsAlreadyExists(s)) return absl::AlreadyExistsError(absl::StrCat("agent ", name, " already exists"));
  return s;
}

absl::StatusOr<std::vector<pgward::v1::Agent>> Store::ListAgents() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      "SELECT name, created_unix_ms, last_seen_unix_ms, version, peer FROM agents ORDER BY name");
  if (!q.ok()) return q.status();
  std::vector<pgward::v1::Agent> agents;
  while (true) {
    absl::StatusOr<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    pgward::v1::Agent& a = agents.emplace_back();
    a.set_name(q->Text(0));
    a.set_created_unix_ms(q->Int(1));
    a.set_last_seen_unix_ms(q->Int(2));
    a.set_version(q->Text(3));
    a.set_peer(q->Text(4));
  }
  return agents;
}

absl::Status Store::DeleteAgent(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return InTransaction(*db_, [&]() -> absl::Status {
    if (absl::Status s = AgentExistsLocked(name); !s.ok()) return s;
    absl::StatusOr<Statement> used =
        db_->Prepare("SELECT name FROM connections WHERE agent = ? ORDER BY name LIMIT 5");
    if (!used.ok()) return used.status();
    used->BindText(1, name);
    std::vector<std::string> users;
    while (true) {
      absl::StatusOr<bool> row = used->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      users.push_back(used->Text(0));
    }
    if (!users.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("agent ", name, " is used by connection(s) ", absl::StrJoin(users, ", "),
                       "; delete or move them first"));
    }
    absl::StatusOr<Statement> del = db_->Prepare("DELETE FROM agents WHERE name = ?");
    if (!del.ok()) return del.status();
    del->BindText(1, name);
    return del->Run();
  });
}

bool AgentCredentials::Accepts(std::string_view hash, int64_t now_unix_ms) const {
  // Both compared every time, so the timing says nothing about which one matched.
  const bool current_match = !current.empty() && crypto::ConstantTimeEquals(hash, current);
  const bool previous_match = !previous.empty() && crypto::ConstantTimeEquals(hash, previous);
  return current_match || (previous_match && now_unix_ms < previous_expires_unix_ms);
}

absl::Status Store::AuthenticateAgent(const std::string& name, std::string_view token) {
  const std::string presented = crypto::HashToken(token);
  absl::StatusOr<AgentCredentials> stored = GetAgentCredentials(name);
  if (!stored.ok() && !absl::IsNotFound(stored.status())) return stored.status();
  // Compare even for an unknown name so neither the message nor the timing tells a caller
  // which agent names exist.
  AgentCredentials unknown{crypto::HashToken(""), crypto::HashToken(""), 0};
  const bool match = (stored.ok() ? *stored : unknown).Accepts(presented, NowUnixMs());
  if (!stored.ok() || !match) return absl::UnauthenticatedError("agent authentication failed");
  return absl::OkStatus();
}

absl::Status Store::TouchAgent(const std::string& name, int64_t seen_unix_ms, const std::string& version,
                               const std::string& peer) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      "UPDATE agents SET last_seen_unix_ms = ?, version = ?, peer = ? WHERE name = ?");
  if (!q.ok()) return q.status();
  q->BindInt(1, seen_unix_ms).BindText(2, version).BindText(3, peer).BindText(4, name);
  if (absl::Status s = q->Run(); !s.ok()) return s;
  if (db_->Changes() == 0) return absl::NotFoundError(absl::StrCat("agent ", name, " not found"));
  return absl::OkStatus();
}

absl::StatusOr<AgentCredentials> Store::GetAgentCredentials(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      "SELECT token_hash, previous_token_hash, previous_token_expires_unix_ms FROM agents WHERE name = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, name);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("agent ", name, " not found"));
  return AgentCredentials{q->Text(0), q->Text(1), q->Int(2)};
}

absl::StatusOr<AgentCredentials> Store::RotateAgentToken(const std::string& name, const std::string& new_token_hash,
                                                         int64_t grace_ms, int64_t now_unix_ms) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      "UPDATE agents SET previous_token_hash = CASE WHEN ?2 > 0 THEN token_hash ELSE '' END,"
      " previous_token_expires_unix_ms = CASE WHEN ?2 > 0 THEN ?3 + ?2 ELSE 0 END, token_hash = ?4"
      " WHERE name = ?1 RETURNING token_hash, previous_token_hash, previous_token_expires_unix_ms");
  if (!q.ok()) return q.status();
  q->BindText(1, name).BindInt(2, grace_ms).BindInt(3, now_unix_ms).BindText(4, new_token_hash);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("agent ", name, " not found"));
  AgentCredentials stored{q->Text(0), q->Text(1), q->Int(2)};
  if (absl::StatusOr<bool> end = q->Step(); !end.ok()) return end.status();
  return stored;
}

absl::StatusOr<std::optional<int64_t>> Store::NextAgentTokenExpiry(int64_t now_unix_ms) {
  absl::MutexLock lock(&mu_);
  return FirstTimeAfter(*db_,
                        "SELECT MIN(previous_token_expires_unix_ms) FROM agents WHERE previous_token_expires_unix_ms > ?",
                        now_unix_ms);
}

// --- connections

absl::Status Store::CreateConnection(const pgward::v1::Connection& c, const std::string& sealed_password) {
  absl::MutexLock lock(&mu_);
  return InTransaction(*db_, [&]() -> absl::Status {
    if (absl::Status s = AgentExistsLocked(c.agent()); !s.ok()) return s;
    absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
        "INSERT INTO connections(", kConnectionColumns,
        ", sealed_password) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    if (!q.ok()) return q.status();
    q->BindText(1, c.name()).BindText(2, c.agent()).BindText(3, c.host()).BindInt(4, c.port());
    q->BindText(5, c.database()).BindText(6, c.user()).BindText(7, c.password_ref());
    q->BindText(8, c.sslmode()).BindText(9, c.ca_file()).BindInt(10, NowUnixMs());
    q->BindBlob(11, sealed_password);
    absl::Status s = q->Run();
    if (absl::IsAlreadyExists(s)) {
      return absl::AlreadyExistsError(absl::StrCat("connection ", c.name(), " already exists"));
    }
    return s;
  });
}

absl::Status Store::UpdateConnection(const pgward::v1::Connection& c, const std::vector<std::string>& fields,
                                     const std::optional<std::string>& sealed_password) {
  // Column names come from this fixed list, never from the request, so the SQL built below
  // cannot be injected into.
  static constexpr const char* kUpdatable[] = {"agent",        "host",    "port",   "database", "user",
                                               "password_ref", "sslmode", "ca_file"};
  std::vector<std::string> columns;
  for (const std::string& f : fields) {
    auto it = std::find_if(std::begin(kUpdatable), std::end(kUpdatable),
                           [&](const char* known) { return f == known; });
    if (it == std::end(kUpdatable)) {
      return absl::InvalidArgumentError(absl::StrCat("connection field ", f, " cannot be updated"));
    }
    if (std::find(columns.begin(), columns.end(), f) == columns.end()) columns.push_back(f);
  }
  if (sealed_password.has_value()) columns.push_back("sealed_password");
  absl::MutexLock lock(&mu_);
  return InTransaction(*db_, [&]() -> absl::Status {
    if (absl::Status s = ConnectionExistsLocked(c.name()); !s.ok()) return s;
    if (columns.empty()) return absl::OkStatus();
    if (std::find(columns.begin(), columns.end(), "agent") != columns.end()) {
      if (absl::Status s = AgentExistsLocked(c.agent()); !s.ok()) return s;
    }
    std::vector<std::string> sets;
    for (const std::string& col : columns) sets.push_back(absl::StrCat(col, " = ?"));
    absl::StatusOr<Statement> q = db_->Prepare(
        absl::StrCat("UPDATE connections SET ", absl::StrJoin(sets, ", "), " WHERE name = ?"));
    if (!q.ok()) return q.status();
    int index = 1;
    for (const std::string& col : columns) {
      if (col == "agent") q->BindText(index, c.agent());
      if (col == "host") q->BindText(index, c.host());
      if (col == "port") q->BindInt(index, c.port());
      if (col == "database") q->BindText(index, c.database());
      if (col == "user") q->BindText(index, c.user());
      if (col == "password_ref") q->BindText(index, c.password_ref());
      if (col == "sslmode") q->BindText(index, c.sslmode());
      if (col == "ca_file") q->BindText(index, c.ca_file());
      if (col == "sealed_password") q->BindBlob(index, *sealed_password);
      ++index;
    }
    q->BindText(index, c.name());
    return q->Run();
  });
}

absl::StatusOr<pgward::v1::Connection> Store::GetConnection(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q =
      db_->Prepare(absl::StrCat("SELECT ", kConnectionColumns, " FROM connections WHERE name = ?"));
  if (!q.ok()) return q.status();
  q->BindText(1, name);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("connection ", name, " not found"));
  return ReadConnection(*q);
}

absl::StatusOr<std::string> Store::GetSealedPassword(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare("SELECT sealed_password FROM connections WHERE name = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, name);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("connection ", name, " not found"));
  return q->Blob(0);
}

absl::StatusOr<std::vector<pgward::v1::Connection>> Store::ListConnections() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q =
      db_->Prepare(absl::StrCat("SELECT ", kConnectionColumns, " FROM connections ORDER BY name"));
  if (!q.ok()) return q.status();
  std::vector<pgward::v1::Connection> out;
  while (true) {
    absl::StatusOr<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back(ReadConnection(*q));
  }
}

absl::Status Store::DeleteConnection(const std::string& name) {
  absl::MutexLock lock(&mu_);
  // Grants go with the connection (ON DELETE CASCADE in the schema, foreign_keys is on).
  absl::StatusOr<Statement> q = db_->Prepare("DELETE FROM connections WHERE name = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, name);
  if (absl::Status s = q->Run(); !s.ok()) return s;
  if (db_->Changes() == 0) return absl::NotFoundError(absl::StrCat("connection ", name, " not found"));
  return absl::OkStatus();
}

// --- grants

absl::StatusOr<pgward::v1::Grant> Store::CreateGrant(pgward::v1::Grant g) {
  g.set_id(absl::StrCat("g_", crypto::HexEncode(crypto::RandomBytes(8))));
  g.set_created_unix_ms(NowUnixMs());
  absl::MutexLock lock(&mu_);
  absl::Status status = InTransaction(*db_, [&]() -> absl::Status {
    if (absl::Status s = ConnectionExistsLocked(g.connection()); !s.ok()) return s;
    absl::StatusOr<Statement> q = db_->Prepare(
        absl::StrCat("INSERT INTO grants(", kGrantColumns, ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    if (!q.ok()) return q.status();
    q->BindText(1, g.id()).BindText(2, g.principal()).BindText(3, g.group()).BindText(4, g.issuer());
    q->BindText(5, g.connection()).BindBlob(6, g.policy().SerializeAsString());
    q->BindInt(7, g.expires_unix_ms()).BindInt(8, g.created_unix_ms()).BindText(9, g.created_by());
    absl::Status s = q->Run();
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      return absl::InvalidArgumentError("a grant names exactly one of principal or group");
    }
    return s;
  });
  if (!status.ok()) return status;
  return g;
}

absl::StatusOr<std::vector<pgward::v1::Grant>> Store::ListGrants(const pgward::v1::ListGrantsRequest& filter) {
  absl::MutexLock lock(&mu_);
  // An empty filter value matches everything, so one prepared statement serves all filters.
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "SELECT ", kGrantColumns,
      " FROM grants WHERE (?1 = '' OR principal = ?1) AND (?2 = '' OR group_name = ?2)"
      " AND (?3 = '' OR connection = ?3) AND (?4 = '' OR issuer = ?4) ORDER BY created_unix_ms, id"));
  if (!q.ok()) return q.status();
  q->BindText(1, filter.principal()).BindText(2, filter.group()).BindText(3, filter.connection());
  q->BindText(4, filter.issuer());
  return ReadGrants(*q);
}

absl::StatusOr<pgward::v1::Grant> Store::UpdateGrant(
    const std::string& id, const std::function<absl::Status(pgward::v1::Grant&)>& change) {
  pgward::v1::Grant g;
  absl::MutexLock lock(&mu_);
  absl::Status status = InTransaction(*db_, [&]() -> absl::Status {
    absl::StatusOr<Statement> read = db_->Prepare(absl::StrCat("SELECT ", kGrantColumns, " FROM grants WHERE id = ?"));
    if (!read.ok()) return read.status();
    read->BindText(1, id);
    absl::StatusOr<std::vector<pgward::v1::Grant>> found = ReadGrants(*read);
    if (!found.ok()) return found.status();
    if (found->empty()) return absl::NotFoundError(absl::StrCat("grant ", id, " not found"));
    g = std::move(found->front());
    if (absl::Status s = change(g); !s.ok()) return s;
    absl::StatusOr<Statement> write =
        db_->Prepare("UPDATE grants SET policy = ?, expires_unix_ms = ? WHERE id = ?");
    if (!write.ok()) return write.status();
    write->BindBlob(1, g.policy().SerializeAsString()).BindInt(2, g.expires_unix_ms()).BindText(3, id);
    return write->Run();
  });
  if (!status.ok()) return status;
  return g;
}

absl::Status Store::DeleteGrant(const std::string& id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare("DELETE FROM grants WHERE id = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, id);
  if (absl::Status s = q->Run(); !s.ok()) return s;
  if (db_->Changes() == 0) return absl::NotFoundError(absl::StrCat("grant ", id, " not found"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<pgward::v1::Grant>> Store::FindGrants(const std::string& issuer,
                                                                 const std::string& principal,
                                                                 const std::vector<std::string>& groups,
                                                                 const std::string& connection,
                                                                 int64_t now_unix_ms,
                                                                 const std::string& issuerless_grants_issuer) {
  // A token always names its issuer; without one, "" = "" would match issuer-less grants.
  if (issuer.empty()) return std::vector<pgward::v1::Grant>();
  std::vector<pgward::v1::Grant> candidates;
  {
    absl::MutexLock lock(&mu_);
    // The connection index narrows to a handful of rows; group membership is checked below
    // because the group list has no fixed size.
    absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
        "SELECT ", kGrantColumns,
        " FROM grants WHERE connection = ?1 AND (issuer = ?2 OR (issuer = '' AND ?2 = ?4))"
        " AND (expires_unix_ms = 0 OR expires_unix_ms > ?3) ORDER BY created_unix_ms, id"));
    if (!q.ok()) return q.status();
    q->BindText(1, connection).BindText(2, issuer).BindInt(3, now_unix_ms).BindText(4, issuerless_grants_issuer);
    absl::StatusOr<std::vector<pgward::v1::Grant>> all = ReadGrants(*q);
    if (!all.ok()) return all.status();
    candidates = *std::move(all);
  }
  const absl::flat_hash_set<std::string> group_set(groups.begin(), groups.end());
  std::vector<pgward::v1::Grant> matches;
  for (pgward::v1::Grant& g : candidates) {
    const bool by_principal = !g.principal().empty() && g.principal() == principal;
    const bool by_group = !g.group().empty() && group_set.contains(g.group());
    if (by_principal || by_group) matches.push_back(std::move(g));
  }
  return matches;
}

absl::StatusOr<std::optional<int64_t>> Store::NextGrantExpiry(int64_t now_unix_ms) {
  absl::MutexLock lock(&mu_);
  return FirstTimeAfter(*db_, "SELECT MIN(expires_unix_ms) FROM grants WHERE expires_unix_ms > ?", now_unix_ms);
}

absl::StatusOr<int64_t> Store::CountIssuerlessGrants() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare("SELECT count(*) FROM grants WHERE issuer = ''");
  if (!q.ok()) return q.status();
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  return *row ? q->Int(0) : 0;
}

}  // namespace pgward::store

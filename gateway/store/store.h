// The gateway's persistent state in one SQLite file: agents, connections, grants, sessions
// and the statement audit. Versioned schema (migrations.h); one writer at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/store/sqlite_db.h"
#include "pgward/v1/admin.grpc.pb.h"
#include "pgward/v1/agent.pb.h"
#include "pgward/v1/types.pb.h"

namespace pgward::store {

// The token hashes an agent may use: its current one, and during a rotation's grace period
// the one before.
struct AgentCredentials {
  std::string current;
  std::string previous;
  int64_t previous_expires_unix_ms = 0;
  // True if `hash` is the current token's, or the previous one's before its grace ends.
  // Constant time in the hash.
  bool Accepts(std::string_view hash, int64_t now_unix_ms) const;
};

class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests) and migrates it to the
  // latest schema. FAILED_PRECONDITION if the file was written by a newer pgward.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path);

  int SchemaVersion() const { return schema_version_; }

  // --- agents. Only crypto::HashToken(token) is stored, never the token.
  absl::Status CreateAgent(const std::string& name, const std::string& token_hash);  // ALREADY_EXISTS
  absl::StatusOr<std::vector<pgward::v1::Agent>> ListAgents();
  // NOT_FOUND; FAILED_PRECONDITION while connections still use the agent.
  absl::Status DeleteAgent(const std::string& name);
  // UNAUTHENTICATED with the same message whether the name is unknown or the token wrong (or
  // rotated out and past its grace period).
  absl::Status AuthenticateAgent(const std::string& name, std::string_view token);
  // NOT_FOUND if the agent does not exist (any more).
  absl::Status TouchAgent(const std::string& name, int64_t seen_unix_ms, const std::string& version,
                          const std::string& peer);
  // The token hashes (crypto::HashToken) an agent may authenticate with; NOT_FOUND if it does
  // not exist. A stream authenticated with a hash they do not accept belongs to a deleted (or
  // re-created) agent, or holds a token rotated out (RotateAgentToken).
  absl::StatusOr<AgentCredentials> GetAgentCredentials(const std::string& name);
  // Makes `new_token_hash` the agent's token. The current one keeps working until
  // `now_unix_ms + grace_ms` (grace 0: it stops at once); a token from an earlier rotation
  // stops at once. NOT_FOUND if there is no such agent. Returns the credentials now stored.
  absl::StatusOr<AgentCredentials> RotateAgentToken(const std::string& name, const std::string& new_token_hash,
                                                    int64_t grace_ms, int64_t now_unix_ms);
  // The earliest end of a rotated-out token's grace period after `now_unix_ms`, if any.
  absl::StatusOr<std::optional<int64_t>> NextAgentTokenExpiry(int64_t now_unix_ms);

  // --- connections. `sealed_password` is the SecretBox output for password_ref "gateway:",
  // empty otherwise. NOT_FOUND if the agent does not exist; ALREADY_EXISTS on a taken name.
  absl::Status CreateConnection(const pgward::v1::Connection& c, const std::string& sealed_password);
  // `fields` are Connection field names (agent, host, port, database, user, password_ref,
  // sslmode, ca_file); only those change. A present `sealed_password` replaces the stored one.
  absl::Status UpdateConnection(const pgward::v1::Connection& c, const std::vector<std::string>& fields,
                                const std::optional<std::string>& sealed_password);
  absl::StatusOr<pgward::v1::Connection> GetConnection(const std::string& name);
  absl::StatusOr<std::string> GetSealedPassword(const std::string& name);
  absl::StatusOr<std::vector<pgward::v1::Connection>> ListConnections();
  absl::Status DeleteConnection(const std::string& name);  // deletes its grants too

  // --- grants
  // Assigns id ("g_" + 16 random hex digits) and created_unix_ms; NOT_FOUND if the
  // connection does not exist.
  absl::StatusOr<pgward::v1::Grant> CreateGrant(pgward::v1::Grant g);
  absl::StatusOr<std::vector<pgward::v1::Grant>> ListGrants(const pgward::v1::ListGrantsRequest& filter);
  absl::Status DeleteGrant(const std::string& id);
  // Reads grant `id`, lets `change` edit it (an error from it aborts the update) and writes back
  // its policy and expiry, in one transaction. NOT_FOUND if there is no such grant. Returns the
  // grant as stored.
  absl::StatusOr<pgward::v1::Grant> UpdateGrant(
      const std::string& id, const std::function<absl::Status(pgward::v1::Grant&)>& change);
  // Grants on `connection` naming `principal` or one of `groups` of `issuer` (principals and
  // groups are scoped to their issuer, contract section 2) that have not expired at
  // `now_unix_ms`. A grant with no issuer (made before issuers were recorded) belongs to
  // `issuerless_grants_issuer`: the single trusted issuer, or "" (nobody) when several are.
  absl::StatusOr<std::vector<pgward::v1::Grant>> FindGrants(const std::string& issuer,
                                                            const std::string& principal,
                                                            const std::vector<std::string>& groups,
                                                            const std::string& connection,
                                                            int64_t now_unix_ms,
                                                            const std::string& issuerless_grants_issuer);
  // The earliest expiry after `now_unix_ms` among all grants, if any grant expires later.
  absl::StatusOr<std::optional<int64_t>> NextGrantExpiry(int64_t now_unix_ms);
  // How many grants have no issuer (see FindGrants), for the start-up warning.
  absl::StatusOr<int64_t> CountIssuerlessGrants();

  // --- revocations (contract section 9). A Revocation names exactly one of principal or group,
  // with its issuer (callers validate and resolve it first).
  // ALREADY_EXISTS (naming it) if it is revoked already: the first record, with its reason, stays.
  absl::Status Revoke(const pgward::v1::Revocation& r);
  // NOT_FOUND (naming it) if it is not revoked.
  absl::Status Restore(const pgward::v1::Revocation& r);
  // Oldest first (in the order made, within a millisecond).
  absl::StatusOr<std::vector<pgward::v1::Revocation>> ListRevocations();
  // The revocation that bars a token of `issuer` for `principal` with `groups`, if any: the
  // principal's own first, else the oldest of its groups'.
  absl::StatusOr<std::optional<pgward::v1::Revocation>> FindRevocation(const std::string& issuer,
                                                                       const std::string& principal,
                                                                       const std::vector<std::string>& groups);

  // --- the identity provider's revocation events (gateway/events): tokens of (issuer,
  // subject) issued before a cut-off are refused. Keeps the later of the stored and the new
  // cut-off (an older event arriving late changes nothing) and returns the one now in force.
  absl::StatusOr<int64_t> RaiseSubjectCutoff(const std::string& issuer, const std::string& subject,
                                             int64_t not_before_unix, const std::string& event,
                                             int64_t received_unix_ms);
  // The cut-off for (issuer, subject), or 0 if there is none.
  absl::StatusOr<int64_t> SubjectCutoff(const std::string& issuer, const std::string& subject);

  // --- sessions and audit
  absl::Status InsertSession(const pgward::v1::SessionRecord& s);  // ALREADY_EXISTS
  // How a session's end is recorded, by the gateway (EndSession) and by the agent's SessionEnded
  // (RecordAgentSessionEnd), in whichever order they arrive:
  //  1. The gateway's own decisions to end a session (IsGatewayDecidedEnd: killed,
  //     grant_deleted, grant_expired, grant_changed, token_expired, agent_deleted,
  //     agent_token_rotated, token_revoked, principal_revoked) are
  //     final: nothing replaces them.
  //  2. Otherwise the agent's report wins, time and reason: it saw the upstream connection
  //     close (client_terminate, upstream_closed, lexing_setting_changed, ...), while the
  //     gateway saw only the caller's side (client_disconnect, agent_lost, closed).
  //  3. Otherwise the first end recorded stays.
  // Both calls are idempotent: an agent replaying its events after a reconnect changes nothing.
  static bool IsGatewayDecidedEnd(std::string_view reason);
  // NOT_FOUND for an unknown id.
  absl::Status EndSession(const std::string& session_id, int64_t ended_unix_ms, const std::string& reason);
  // The agent's SessionEnded. Its time is clamped to [started, now_unix_ms] (the agent's clock
  // is not the gateway's); an empty reason is recorded as "closed". NOT_FOUND for an unknown id
  // (the upstream login failed before the session opened); PERMISSION_DENIED when the session
  // was brokered to another agent (nothing changes).
  absl::Status RecordAgentSessionEnd(const std::string& agent, const pgward::v1::SessionEnded& ended,
                                     int64_t now_unix_ms);
  // Closes sessions left open by a previous gateway process (crash recovery at start).
  absl::Status EndAllOpenSessions(int64_t ended_unix_ms, const std::string& reason);
  // Newest first; limit 0 means 100.
  absl::StatusOr<std::vector<pgward::v1::SessionRecord>> ListSessions(
      const pgward::v1::ListSessionsRequest& filter);
  // What InsertStatementEvents (or InsertAuditBatches, per batch) did with each event.
  struct InsertedEvents {
    size_t stored = 0;    // new rows
    size_t replayed = 0;  // (agent, boot_id, seq) already stored
    // (seq, session_id) of events for a session the gateway did not broker to this agent
    // (unknown, or another agent's): not stored.
    std::vector<std::pair<uint64_t, std::string>> refused;
  };
  // One EventBatch of one agent boot, split by kind: what the audit writer stores.
  struct AgentBatch {
    std::string agent;
    std::string boot_id;
    std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> statements;
    std::vector<std::pair<uint64_t, pgward::v1::SessionEnded>> session_ends;
  };
  // Stores several batches, of any agents, in ONE transaction: one commit per audit-writer
  // wake-up is what keeps the store at tens of thousands of events per second. Per batch: its
  // statements as InsertStatementEvents stores them, then its session ends as
  // RecordAgentSessionEnd records them; an end naming another agent's session is added to the
  // batch's `refused`, one naming no session is skipped (the login failed before the session
  // opened). One InsertedEvents per batch, in order; on an error nothing at all is stored.
  absl::StatusOr<std::vector<InsertedEvents>> InsertAuditBatches(const std::vector<const AgentBatch*>& batches,
                                                                 int64_t now_unix_ms);
  // One transaction, idempotent on (agent, boot_id, seq): replays after a reconnect never
  // duplicate rows. An event is stored only if its session's row names `agent`: an agent
  // speaks for its own sessions only. Bumps each session's statement count by the rows
  // actually inserted.
  absl::StatusOr<InsertedEvents> InsertStatementEvents(
      const std::string& agent, const std::string& boot_id,
      const std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>>& events);
  // The agent a session was brokered to; NOT_FOUND if no session row has this id (e.g. the
  // upstream login failed before the session opened).
  absl::StatusOr<std::string> SessionAgent(const std::string& session_id);
  // Newest first, joined with the session row for principal/issuer/connection/agent/
  // client_addr; limit 0 means 100, capped at 10000.
  absl::StatusOr<std::vector<pgward::v1::AuditRow>> ListAudit(const pgward::v1::ListAuditRequest& filter);

 private:
  Store(std::unique_ptr<SqliteDb> db, int schema_version)
      : db_(std::move(db)), schema_version_(schema_version) {}

  absl::Status AgentExistsLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The bodies of InsertStatementEvents and RecordAgentSessionEnd, inside the caller's
  // transaction (InsertAuditBatches runs many of them in one).
  absl::Status InsertStatementEventsLocked(const std::string& agent, const std::string& boot_id,
                                           const std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>>& events,
                                           InsertedEvents& result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RecordAgentSessionEndLocked(const std::string& agent, const pgward::v1::SessionEnded& ended,
                                           int64_t now_unix_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ConnectionExistsLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  // One connection for reads and writes, serialized by mu_: SQLite allows one writer anyway,
  // and the gateway's load on the store is small next to the byte path.
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
  const int schema_version_;
};

}  // namespace pgward::store

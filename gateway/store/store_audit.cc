// Store: sessions and the per-statement audit (contract section 5).
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gateway/store/store.h"

namespace pgward::store {
namespace {

constexpr uint32_t kDefaultLimit = 100;
constexpr uint32_t kMaxLimit = 10000;

int64_t EffectiveLimit(uint32_t requested) {
  if (requested == 0) return kDefaultLimit;
  return std::min(requested, kMaxLimit);
}

constexpr char kSessionColumns[] =
    "session_id, principal, issuer, connection, agent, client_addr, application_name, caller_user, "
    "started_unix_ms, ended_unix_ms, end_reason, statements";

}  // namespace

absl::Status Store::InsertSession(const pgward::v1::SessionRecord& s) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "INSERT INTO sessions(", kSessionColumns, ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  if (!q.ok()) return q.status();
  q->BindText(1, s.session_id()).BindText(2, s.principal()).BindText(3, s.issuer());
  q->BindText(4, s.connection()).BindText(5, s.agent()).BindText(6, s.client_addr());
  q->BindText(7, s.application_name()).BindText(8, s.caller_user()).BindInt(9, s.started_unix_ms());
  q->BindInt(10, s.ended_unix_ms()).BindText(11, s.end_reason());
  q->BindInt(12, static_cast<int64_t>(s.statements()));
  absl::Status status = q->Run();
  if (absl::IsAlreadyExists(status)) {
    return absl::AlreadyExistsError(absl::StrCat("session ", s.session_id(), " already exists"));
  }
  return status;
}

bool Store::IsGatewayDecidedEnd(std::string_view reason) {
  return reason == "killed" || reason == "grant_deleted" || reason == "token_expired" || reason == "agent_deleted" ||
         reason == "principal_revoked" || reason == "grant_expired" || reason == "grant_changed" ||
         reason == "agent_token_rotated" || reason == "token_revoked";
}

namespace {
// IsGatewayDecidedEnd as SQL, for the UPDATEs below; keep the two in step.
constexpr char kDecidedReasons[] =
    "('killed', 'grant_deleted', 'grant_expired', 'grant_changed', 'token_expired', 'agent_deleted', "
    "'principal_revoked', 'agent_token_rotated', 'token_revoked')";
}  // namespace

absl::Status Store::EndSession(const std::string& session_id, int64_t ended_unix_ms, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  // An open row takes this end; an ended one only when this is a gateway decision and the
  // recorded reason is not (precedence rule 1); its time stays (the agent's, rule 2).
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "UPDATE sessions SET ended_unix_ms = CASE WHEN ended_unix_ms = 0 THEN ?1 ELSE ended_unix_ms END,"
      " end_reason = ?2 WHERE session_id = ?3 AND (ended_unix_ms = 0 OR (?4 = 1 AND end_reason NOT IN ",
      kDecidedReasons, "))"));
  if (!q.ok()) return q.status();
  q->BindInt(1, ended_unix_ms).BindText(2, reason).BindText(3, session_id);
  q->BindInt(4, IsGatewayDecidedEnd(reason) ? 1 : 0);
  if (absl::Status s = q->Run(); !s.ok()) return s;
  if (db_->Changes() > 0) return absl::OkStatus();
  // Nothing changed: either already ended with an end that stays, or unknown.
  absl::StatusOr<Statement> exists = db_->Prepare("SELECT 1 FROM sessions WHERE session_id = ?");
  if (!exists.ok()) return exists.status();
  exists->BindText(1, session_id);
  absl::StatusOr<bool> row = exists->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("session ", session_id, " not found"));
  return absl::OkStatus();
}

absl::Status Store::RecordAgentSessionEnd(const std::string& agent, const pgward::v1::SessionEnded& ended,
                                          int64_t now_unix_ms) {
  absl::MutexLock lock(&mu_);
  return RecordAgentSessionEndLocked(agent, ended, now_unix_ms);
}

absl::Status Store::RecordAgentSessionEndLocked(const std::string& agent, const pgward::v1::SessionEnded& ended,
                                                int64_t now_unix_ms) {
  absl::StatusOr<Statement> owner = db_->Prepare("SELECT agent FROM sessions WHERE session_id = ?");
  if (!owner.ok()) return owner.status();
  owner->BindText(1, ended.session_id());
  absl::StatusOr<bool> row = owner->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("session ", ended.session_id(), " not found"));
  if (owner->Text(0) != agent) {
    return absl::PermissionDeniedError(
        absl::StrCat("session ", ended.session_id(), " was not brokered to agent ", agent));
  }
  // Rule 2: the agent's end replaces anything but a gateway decision.
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "UPDATE sessions SET ended_unix_ms = MAX(started_unix_ms, MIN(?1, ?2)), end_reason = ?3"
      " WHERE session_id = ?4 AND end_reason NOT IN ",
      kDecidedReasons));
  if (!q.ok()) return q.status();
  const int64_t reported = ended.ended_unix_ms() > 0 ? ended.ended_unix_ms() : now_unix_ms;
  q->BindInt(1, reported).BindInt(2, now_unix_ms);
  q->BindText(3, ended.reason().empty() ? std::string("closed") : ended.reason()).BindText(4, ended.session_id());
  return q->Run();
}

absl::Status Store::EndAllOpenSessions(int64_t ended_unix_ms, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q =
      db_->Prepare("UPDATE sessions SET ended_unix_ms = ?, end_reason = ? WHERE ended_unix_ms = 0");
  if (!q.ok()) return q.status();
  q->BindInt(1, ended_unix_ms).BindText(2, reason);
  return q->Run();
}

absl::StatusOr<std::vector<pgward::v1::SessionRecord>> Store::ListSessions(
    const pgward::v1::ListSessionsRequest& filter) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "SELECT ", kSessionColumns,
      " FROM sessions WHERE (?1 = 0 OR ended_unix_ms = 0) AND (?2 = '' OR principal = ?2)"
      " AND (?3 = '' OR connection = ?3) AND (?5 = '' OR issuer = ?5)"
      " ORDER BY started_unix_ms DESC, session_id LIMIT ?4"));
  if (!q.ok()) return q.status();
  q->BindInt(1, filter.active_only() ? 1 : 0).BindText(2, filter.principal());
  q->BindText(3, filter.connection()).BindInt(4, EffectiveLimit(filter.limit())).BindText(5, filter.issuer());
  std::vector<pgward::v1::SessionRecord> out;
  while (true) {
    absl::StatusOr<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    pgward::v1::SessionRecord& s = out.emplace_back();
    s.set_session_id(q->Text(0));
    s.set_principal(q->Text(1));
    s.set_issuer(q->Text(2));
    s.set_connection(q->Text(3));
    s.set_agent(q->Text(4));
    s.set_client_addr(q->Text(5));
    s.set_application_name(q->Text(6));
    s.set_caller_user(q->Text(7));
    s.set_started_unix_ms(q->Int(8));
    s.set_ended_unix_ms(q->Int(9));
    s.set_end_reason(q->Text(10));
    s.set_statements(static_cast<uint64_t>(q->Int(11)));
  }
}

absl::StatusOr<Store::InsertedEvents> Store::InsertStatementEvents(
    const std::string& agent, const std::string& boot_id,
    const std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>>& events) {
  InsertedEvents result;
  if (events.empty()) return result;
  absl::MutexLock lock(&mu_);
  absl::Status status =
      InTransaction(*db_, [&]() { return InsertStatementEventsLocked(agent, boot_id, events, result); });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<Store::InsertedEvents>> Store::InsertAuditBatches(
    const std::vector<const AgentBatch*>& batches, int64_t now_unix_ms) {
  std::vector<InsertedEvents> results(batches.size());
  if (batches.empty()) return results;
  absl::MutexLock lock(&mu_);
  absl::Status status = InTransaction(*db_, [&]() -> absl::Status {
    for (size_t i = 0; i < batches.size(); ++i) {
      const AgentBatch& batch = *batches[i];
      if (absl::Status s = InsertStatementEventsLocked(batch.agent, batch.boot_id, batch.statements, results[i]);
          !s.ok()) {
        return s;
      }
      for (const auto& [seq, ended] : batch.session_ends) {
        absl::Status s = RecordAgentSessionEndLocked(batch.agent, ended, now_unix_ms);
        if (absl::IsPermissionDenied(s)) {
          results[i].refused.emplace_back(seq, ended.session_id());
        } else if (!s.ok() && !absl::IsNotFound(s)) {
          return absl::Status(s.code(), absl::StrCat("recording the end of session ", ended.session_id(),
                                                     " from agent ", batch.agent, ": ", s.message()));
        }
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return results;
}

namespace {
// Built once: Prepare looks statements up by their SQL text, once per audited statement.
const std::string kInsertStatementEvent =
    "INSERT INTO statement_events(agent, boot_id, seq, session_id, time_unix_us, protocol,"
    " statement, fingerprint, command_tag, rows, sqlstate, error, duration_us, decision, rule,"
    " reviewer, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (agent, boot_id, seq) DO NOTHING";
}  // namespace

absl::Status Store::InsertStatementEventsLocked(
    const std::string& agent, const std::string& boot_id,
    const std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>>& events, InsertedEvents& result) {
  // A batch usually carries many events of few sessions: look each session up once, and bump
  // each session's statement count once at the end.
  struct SessionTally {
    bool owned = false;
    int64_t inserted = 0;
  };
  absl::flat_hash_map<std::string, SessionTally> sessions;
  for (const auto& [seq, e] : events) {
    auto [it, first] = sessions.try_emplace(e.session_id());
    if (first) {
      absl::StatusOr<Statement> owner = db_->Prepare("SELECT agent FROM sessions WHERE session_id = ?");
      if (!owner.ok()) return owner.status();
      owner->BindText(1, e.session_id());
      absl::StatusOr<bool> row = owner->Step();
      if (!row.ok()) return row.status();
      it->second.owned = *row && owner->Text(0) == agent;
    }
    if (!it->second.owned) {
      result.refused.emplace_back(seq, e.session_id());
      continue;
    }
    absl::StatusOr<Statement> q = db_->Prepare(kInsertStatementEvent);
    if (!q.ok()) return q.status();
    // seq is a uint64 on the wire; SQLite integers are signed 64-bit. Sequence numbers
    // start at 1 per agent boot and never approach 2^63, and the cast round-trips anyway.
    // Unowned: `agent`, `boot_id` and `e` outlive `q`, and this runs once per audited statement.
    q->BindTextUnowned(1, agent).BindTextUnowned(2, boot_id).BindInt(3, static_cast<int64_t>(seq));
    q->BindTextUnowned(4, e.session_id()).BindInt(5, e.time_unix_us()).BindTextUnowned(6, e.protocol());
    q->BindTextUnowned(7, e.statement()).BindTextUnowned(8, e.fingerprint()).BindTextUnowned(9, e.command_tag());
    q->BindInt(10, e.rows()).BindTextUnowned(11, e.sqlstate()).BindTextUnowned(12, e.error());
    q->BindInt(13, e.duration_us()).BindTextUnowned(14, e.decision()).BindTextUnowned(15, e.rule());
    q->BindTextUnowned(16, e.reviewer());
    // ok | error | unknown (event_bounds.cc clears any other value); none given: from sqlstate.
    if (e.outcome().empty()) {
      q->BindText(17, e.sqlstate().empty() ? "ok" : "error");
    } else {
      q->BindTextUnowned(17, e.outcome());
    }
    if (absl::Status s = q->Run(); !s.ok()) return s;
    if (db_->Changes() == 0) {  // a replay of an event already stored
      ++result.replayed;
      continue;
    }
    ++result.stored;
    ++it->second.inserted;
  }
  for (const auto& [session_id, tally] : sessions) {
    if (tally.inserted == 0) continue;
    absl::StatusOr<Statement> bump =
        db_->Prepare("UPDATE sessions SET statements = statements + ? WHERE session_id = ?");
    if (!bump.ok()) return bump.status();
    bump->BindInt(1, tally.inserted).BindText(2, session_id);
    if (absl::Status s = bump->Run(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Store::SessionAgent(const std::string& session_id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare("SELECT agent FROM sessions WHERE session_id = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, session_id);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("session ", session_id, " not found"));
  return q->Text(0);
}

absl::StatusOr<std::vector<pgward::v1::AuditRow>> Store::ListAudit(const pgward::v1::ListAuditRequest& filter) {
  absl::MutexLock lock(&mu_);
  // LEFT JOIN: an event whose session row is missing (it should not happen, but the agent's
  // word is all we have) still shows up rather than vanishing from the audit.
  // Newest first by time, or (a cursor) by id from after_id on: ids only grow, so a page
  // boundary never skips or repeats a row.
  const bool cursor = filter.has_after_id();
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "SELECT e.id, e.time_unix_us, e.session_id, COALESCE(s.principal, ''), COALESCE(s.issuer, ''),"
      " COALESCE(s.connection, ''), COALESCE(s.agent, e.agent), COALESCE(s.client_addr, ''),"
      " e.protocol, e.statement, e.fingerprint, e.command_tag, e.rows, e.sqlstate, e.error,"
      " e.duration_us, e.decision, e.rule, e.reviewer, e.outcome"
      " FROM statement_events e LEFT JOIN sessions s ON s.session_id = e.session_id"
      " WHERE (?1 = '' OR s.principal = ?1) AND (?2 = '' OR s.connection = ?2)"
      " AND e.time_unix_us >= ?3 AND (?4 = '' OR e.session_id = ?4) AND (?6 = '' OR s.issuer = ?6)",
      cursor ? " AND e.id > ?7 AND (?8 = 0 OR e.id <= ?8) ORDER BY e.id LIMIT ?5"
             : " ORDER BY e.time_unix_us DESC, e.id DESC LIMIT ?5"));
  if (!q.ok()) return q.status();
  q->BindText(1, filter.principal()).BindText(2, filter.connection());
  q->BindInt(3, filter.since_unix_ms() * 1000).BindText(4, filter.session_id());
  q->BindInt(5, EffectiveLimit(filter.limit())).BindText(6, filter.issuer());
  if (cursor) q->BindInt(7, filter.after_id()).BindInt(8, filter.up_to_id());
  std::vector<pgward::v1::AuditRow> out;
  while (true) {
    absl::StatusOr<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    pgward::v1::AuditRow& r = out.emplace_back();
    r.set_id(q->Int(0));
    r.set_time_unix_us(q->Int(1));
    r.set_session_id(q->Text(2));
    r.set_principal(q->Text(3));
    r.set_issuer(q->Text(4));
    r.set_connection(q->Text(5));
    r.set_agent(q->Text(6));
    r.set_client_addr(q->Text(7));
    r.set_protocol(q->Text(8));
    r.set_statement(q->Text(9));
    r.set_fingerprint(q->Text(10));
    r.set_command_tag(q->Text(11));
    r.set_rows(q->Int(12));
    r.set_sqlstate(q->Text(13));
    r.set_error(q->Text(14));
    r.set_duration_us(q->Int(15));
    r.set_decision(q->Text(16));
    r.set_rule(q->Text(17));
    r.set_reviewer(q->Text(18));
    r.set_outcome(q->Text(19));
  }
}

}  // namespace pgward::store

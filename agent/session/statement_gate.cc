// AgentSession::FrontendHandler: see statement_gate.h. Message names follow the protocol
// chapter "Message Formats" (PostgreSQL docs 55.7).
#include "agent/session/statement_gate.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/inspect/identity_check.h"
#include "agent/upstream/pinned_settings.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/sqlstate.h"
#include "common/pgwire/wire_writer.h"
#include "common/util/log.h"

namespace pgward::agent {

absl::Status AgentSession::FrontendHandler::OnMessage(const pgwire::MessageView& msg) {
  std::string& out = s_.to_upstream_;
  if (s_.discard_until_sync_ && msg.type != 'S' && msg.type != 'X') return absl::OkStatus();
  switch (msg.type) {
    case 'Q': {
      auto sql = pgwire::DecodeQuery(msg.body);
      if (!sql.ok()) return sql.status();
      StartRoundTrip(out);
      auto statements = s_.deps_.analyzer->AnalyzeQuery(*sql);
      if (statements.size() == 1 && statements[0]->plain_application_name_set) {
        s_.tracker_.OnQuery(std::move(statements));
        pgwire::AppendQuery(out, OwnedApplicationNameSet(s_.grant_.principal()));
        EndRoundTrip(out, /*ran=*/false, /*may_copy_in=*/false);
        return absl::OkStatus();
      }
      bool may_copy_in = false;
      bool resets = false;
      for (const auto& statement : statements) {
        PolicyDecision decision = s_.Decide(*statement);
        if (!decision.allowed) {
          // In place of the Query, one that fails in the server (AppendRefusalQuery), so an
          // open transaction fails as by a server error; the refusal replaces its error.
          s_.EmitDenied(*statement, false, decision);
          if (!s_.AppendRefusalQuery(out, Refusal(decision))) {
            // The server is skipping to a Sync: a Sync in place of the Query yields a
            // ReadyForQuery at exactly the point the caller expects one, the refusal before it.
            s_.tracker_.OnSync(Refusal(decision));
            pgwire::AppendSync(out);
          }
          EndRoundTrip(out, /*ran=*/false, /*may_copy_in=*/false);
          return absl::OkStatus();
        }
        may_copy_in |= statement->statement_class == inspect::StatementClass::kCopyIn;
        resets |= statement->resets_session;
      }
      const bool ran = !statements.empty();
      s_.tracker_.OnQuery(std::move(statements));
      out.append(msg.raw);
      if (resets) s_.read_only_owed_ |= s_.ReadOnlyDiverged();
      if (resets && s_.upstream_reused_) {
        // Not into a COPY FROM STDIN the Query may start: the server would fail the COPY.
        if (may_copy_in) {
          s_.restore_owed_ = true;
        } else {
          s_.AppendSessionIdRestore(out);
        }
      }
      EndRoundTrip(out, ran, may_copy_in);
      return absl::OkStatus();
    }
    case 'P': {
      auto parse = pgwire::DecodeParse(msg.body);
      if (!parse.ok()) return parse.status();
      StartRoundTrip(out);
      auto statement = s_.deps_.analyzer->AnalyzeParse(parse->query);
      if (parse->param_type_count == 0 && statement->plain_application_name_set) {
        s_.tracker_.OnParse(parse->statement, std::move(statement));
        size_t at = pgwire::BeginMessage(out, 'P');
        pgwire::AppendCString(out, parse->statement);
        pgwire::AppendCString(out, OwnedApplicationNameSet(s_.grant_.principal()));
        pgwire::AppendInt16(out, 0);
        pgwire::FinishMessage(out, at);
        return absl::OkStatus();
      }
      PolicyDecision decision = s_.Decide(*statement);
      if (!decision.allowed) {
        // Extended protocol: like a server error, skip everything up to the next Sync.
        s_.EmitDenied(*statement, true, decision);
        s_.AppendRefusalBatch(out);
        s_.discard_until_sync_ = true;
        s_.refusal_ = Refusal(decision);
        return absl::OkStatus();
      }
      s_.batch_resets_ |= statement->resets_session;
      s_.tracker_.OnParse(parse->statement, std::move(statement));
      break;
    }
    case 'B': {
      auto bind = pgwire::DecodeBind(msg.body);
      if (!bind.ok()) return bind.status();
      StartRoundTrip(out);
      s_.tracker_.OnBind(bind->portal, bind->statement);
      s_.batch_ran_ = true;  // binding can run code: domain checks, planning-time function calls
      break;
    }
    case 'D':
    case 'C': {
      auto target = pgwire::DecodeDescribeOrClose(msg.body);
      if (!target.ok()) return target.status();
      StartRoundTrip(out);
      if (msg.type == 'D') {
        s_.tracker_.OnDescribe(target->kind, target->name);
      } else {
        s_.tracker_.OnClose(target->kind, target->name);
      }
      break;
    }
    case 'E': {
      auto execute = pgwire::DecodeExecute(msg.body);
      if (!execute.ok()) return execute.status();
      StartRoundTrip(out);
      // A statement prepared earlier runs here without a new Parse: the spool is checked again.
      if (std::optional<PolicyDecision> spool_full = s_.SpoolRefusal()) {
        inspect::AnalyzedStatement portal;
        portal.text = absl::StrCat("-- execute of portal \"", AbslView(execute->portal), "\"");
        s_.EmitDenied(portal, true, *spool_full);
        s_.AppendRefusalBatch(out);
        s_.discard_until_sync_ = true;
        s_.refusal_ = Refusal(*spool_full);
        return absl::OkStatus();
      }
      s_.tracker_.OnExecute(execute->portal);
      s_.batch_ran_ = true;
      break;
    }
    case 'S': {
      s_.tracker_.OnSync(std::exchange(s_.refusal_, {}));
      s_.discard_until_sync_ = false;
      out.append(msg.raw);
      const bool batch_resets = std::exchange(s_.batch_resets_, false);
      if (batch_resets) s_.read_only_owed_ |= s_.ReadOnlyDiverged();
      if (batch_resets && s_.upstream_reused_) {
        if (s_.check_after_copy_) {
          s_.restore_owed_ = true;
        } else {
          s_.AppendSessionIdRestore(out);
        }
      }
      const bool ran = std::exchange(s_.batch_ran_, false);
      // COPY FROM STDIN may be running: the server ignores this Sync and would take a Query
      // inside the copy for a protocol error, so a grant with copy_in checks at the next start.
      EndRoundTrip(out, ran, /*may_copy_in=*/s_.check_after_copy_);
      return absl::OkStatus();
    }
    case 'F': {
      // Fast-path calls name a function by OID, invisible to statement policy.
      inspect::AnalyzedStatement call;
      call.text = "<fast-path function call>";
      PolicyDecision decision{false, std::string(pgwire::sqlstate::kInsufficientPrivilege),
                              "fast-path function calls are not allowed through pgward"};
      s_.EmitDenied(call, true, decision);
      s_.tracker_.OnSync(Refusal(decision));
      pgwire::AppendSync(out);
      EndRoundTrip(out, std::exchange(s_.batch_ran_, false), /*may_copy_in=*/s_.check_after_copy_);
      return absl::OkStatus();
    }
    case 'X':
      // Not forwarded: the upstream connection may outlive this session (upstream_pool.h);
      // AgentSession::CloseUpstream says Terminate itself when it closes the connection.
      s_.client_terminated_ = true;
      return absl::OkStatus();
    case 'c':
      s_.tracker_.OnCopyDone();
      break;
    case 'f':
      s_.tracker_.OnCopyFail();
      break;
    case 'H':
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected ", AbslView(pgwire::TypeName(pgwire::Direction::kFrontend, msg.type)),
                       " message after start-up"));
  }
  out.append(msg.raw);
  return absl::OkStatus();
}

absl::Status AgentSession::FrontendHandler::OnStreamedHeader(char, uint32_t, std::string_view header_raw) {
  if (!s_.discard_until_sync_) s_.to_upstream_.append(header_raw);
  return absl::OkStatus();
}

absl::Status AgentSession::FrontendHandler::OnStreamedBody(std::string_view chunk, bool) {
  if (!s_.discard_until_sync_) s_.to_upstream_.append(chunk);
  return absl::OkStatus();
}

std::string AgentSession::FrontendHandler::Refusal(const PolicyDecision& decision) const {
  return BuildRefusal(decision, s_.grant_.principal(), s_.grant_.connection());
}

void AgentSession::FrontendHandler::StartRoundTrip(std::string& out) {
  if (s_.at_round_trip_start_ && s_.restore_owed_) s_.AppendSessionIdRestore(out);
  if (s_.at_round_trip_start_ && s_.check_owed_) s_.AppendIdentityCheck(out);
  if (s_.at_round_trip_start_ && s_.read_only_owed_) s_.AppendReadOnlySetting(out);
  s_.at_round_trip_start_ = false;
}

void AgentSession::FrontendHandler::EndRoundTrip(std::string& out, bool ran, bool may_copy_in) {
  s_.at_round_trip_start_ = true;
  if (!ran || !s_.check_identity_) return;
  if (may_copy_in) {
    s_.check_owed_ = true;
  } else {
    s_.AppendIdentityCheck(out);
  }
}

// ---------------------------------------------------------------------------------------------
// The identity check (inspect/identity_check.h), for sessions whose grant allows code.

void AgentSession::AppendIdentityCheck(std::string& out) {
  if (!tracker_.OnAgentQuery()) {  // the server would discard it: try again at the next round trip
    check_owed_ = true;
    return;
  }
  pgwire::AppendQuery(out, inspect::IdentityCheck::QueryText());
  agent_queries_.push_back(AgentQuery::kIdentityCheck);
  check_owed_ = false;
}

void AgentSession::AppendSessionIdRestore(std::string& out) {
  if (!tracker_.OnAgentQuery()) {  // the server would discard it: try again at the next round trip
    restore_owed_ = true;
    return;
  }
  pgwire::AppendQuery(out, SessionIdSetting(grant_.session_id()));
  agent_queries_.push_back(AgentQuery::kSessionIdRestore);
  restore_owed_ = false;
}

namespace {
// Schema-qualified, so no function or operator of the caller's search_path can stand in; an
// immutable division by zero fails at planning, before anything runs.
constexpr std::string_view kFailInServer =
    "/* pgward: statement refused by the grant's policy */ SELECT pg_catalog.int4div(1, 0)";
}  // namespace

void AgentSession::AppendRefusalBatch(std::string& out) {
  if (!tracker_.OnAgentFailure()) return;
  size_t at = pgwire::BeginMessage(out, 'P');
  pgwire::AppendCString(out, "");  // unnamed statement
  pgwire::AppendCString(out, kFailInServer);
  pgwire::AppendInt16(out, 0);  // no parameter types
  pgwire::FinishMessage(out, at);
  at = pgwire::BeginMessage(out, 'B');
  pgwire::AppendCString(out, "");  // unnamed portal
  pgwire::AppendCString(out, "");
  pgwire::AppendInt16(out, 0);  // no parameter formats
  pgwire::AppendInt16(out, 0);  // no parameters
  pgwire::AppendInt16(out, 0);  // default result formats
  pgwire::FinishMessage(out, at);
  at = pgwire::BeginMessage(out, 'E');
  pgwire::AppendCString(out, "");
  pgwire::AppendInt32(out, 0);
  pgwire::FinishMessage(out, at);
}

bool AgentSession::AppendRefusalQuery(std::string& out, std::string refusal) {
  if (!tracker_.OnAgentQuery(std::move(refusal))) return false;
  pgwire::AppendQuery(out, kFailInServer);
  agent_queries_.push_back(AgentQuery::kRefusal);
  return true;
}

void AgentSession::AppendReadOnlySetting(std::string& out) {
  // Only outside a transaction: a ROLLBACK would undo a SET made inside one.
  if (!tracker_.IdleAtReadyForQuery()) return;
  if (!tracker_.OnAgentQuery()) return;  // the server would discard it: stays owed
  pgwire::AppendQuery(out, ReadOnlySetting(grant_.policy().mode() == pgward::v1::MODE_READ_ONLY));
  agent_queries_.push_back(AgentQuery::kReadOnlySetting);
  read_only_owed_ = false;
}

bool AgentSession::ReadOnlyDiverged() const {
  return (grant_.policy().mode() == pgward::v1::MODE_READ_ONLY) != login_read_only_;
}

void AgentSession::OnIdentityCheckDone() {
  const AgentQuery kind = agent_queries_.empty() ? AgentQuery::kIdentityCheck : agent_queries_.front();
  if (!agent_queries_.empty()) agent_queries_.pop_front();
  if (kind == AgentQuery::kRefusal) return;  // failed on purpose; identity_check_ untouched
  if (kind != AgentQuery::kIdentityCheck) {
    // Failed (an aborted transaction, 25P02, in which the RESET did not stick either): again
    // before the next round trip.
    if (identity_check_.failed()) (kind == AgentQuery::kSessionIdRestore ? restore_owed_ : read_only_owed_) = true;
    identity_check_.Begin();
    return;
  }
  const inspect::IdentityCheck::Verdict verdict = identity_check_.Finish();
  identity_check_.Begin();
  switch (verdict) {
    case inspect::IdentityCheck::Verdict::kIntact:
      break;
    case inspect::IdentityCheck::Verdict::kUnknown:
      check_owed_ = true;  // e.g. 25P02 in an aborted transaction, which cannot keep a change anyway
      break;
    case inspect::IdentityCheck::Verdict::kIdentityChanged:
      EndWithFatal(pgwire::sqlstate::kAdminShutdown,
                   "pgward: the session's identity settings were changed by code it ran; the session was ended",
                   kIdentityChanged);
      break;
    case inspect::IdentityCheck::Verdict::kLexingChanged:
      EndWithFatal(pgwire::sqlstate::kAdminShutdown,
                   "pgward: the session's SQL parsing settings (standard_conforming_strings, client_encoding) were "
                   "changed by code it ran; the session was ended",
                   kLexingSettingChanged);
      break;
  }
}

}  // namespace pgward::agent

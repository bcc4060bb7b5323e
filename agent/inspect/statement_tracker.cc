// StatementTracker: a FIFO of forwarded frontend operations matched against backend responses,
// following the protocol chapter "Message Flow" (PostgreSQL docs 55.2).
#include "agent/inspect/statement_tracker.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace pgward::inspect {
namespace {

int64_t SystemNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Bind/Execute may name something the server does not have; the server will refuse it, and the
// record still needs a statement to show.
AnalyzedStatementPtr Placeholder(std::string text, StatementClass statement_class) {
  auto s = std::make_shared<AnalyzedStatement>();
  s->text = std::move(text);
  s->statement_class = statement_class;
  return s;
}

bool IsCurrentUnparsed(const std::vector<AnalyzedStatementPtr>& statements, size_t index) {
  return index < statements.size() && statements[index] != nullptr && !statements[index]->parsed;
}

}  // namespace

int64_t RowsFromCommandTag(std::string_view tag) {
  // 55.7 CommandComplete: "INSERT oid rows", "DELETE rows", "SELECT rows", "COPY rows", ...: the
  // count, when present, is the last word and the tag has more than one word.
  size_t space = tag.rfind(' ');
  if (space == std::string_view::npos) return -1;
  std::string_view last = tag.substr(space + 1);
  if (last.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(last.front()))) return -1;
  int64_t rows = 0;
  if (!absl::SimpleAtoi(absl::string_view(last.data(), last.size()), &rows)) return -1;
  return rows;
}

StatementTracker::StatementTracker(std::function<int64_t()> now_us) : now_us_(std::move(now_us)) {
  if (!now_us_) now_us_ = SystemNowUs;
}

int64_t StatementTracker::Now() const { return now_us_(); }

absl::Status StatementTracker::Desync(std::string_view what) const {
  return absl::FailedPreconditionError(
      "protocol desync: unexpected " + std::string(what) + " (" + std::to_string(ops_.size()) + " operations pending)");
}

// ---------------------------------------------------------------------------------------------
// Frontend messages. After an extended-protocol error the server discards every message up to
// the next Sync (55.2.3), so those are not queued at all.

void StatementTracker::OnQuery(std::vector<AnalyzedStatementPtr> statements) {
  if (skipping_until_sync_) return;
  Op& op = Push(OpKind::kQuery);
  op.statements = std::move(statements);
  for (const auto& statement : op.statements) {
    const uint64_t id = NextIntent(statement ? statement : Placeholder("", StatementClass::kUnknown), false, op.sent_us);
    if (op.first_intent == 0) op.first_intent = id;
  }
}

void StatementTracker::OnParse(std::string_view statement_name, AnalyzedStatementPtr statement) {
  if (skipping_until_sync_) return;
  Op& op = Push(OpKind::kParse);
  op.name = std::string(statement_name);
  op.statement = statement ? std::move(statement) : Placeholder("", StatementClass::kUnknown);
}

void StatementTracker::OnBind(std::string_view portal, std::string_view statement_name) {
  if (skipping_until_sync_) return;
  Op& op = Push(OpKind::kBind);
  op.name = std::string(portal);
  op.statement_name = std::string(statement_name);
}

void StatementTracker::OnDescribe(char kind, std::string_view name) {
  if (skipping_until_sync_) return;
  Op& op = Push(OpKind::kDescribe);
  op.target = kind;
  op.name = std::string(name);
}

void StatementTracker::OnExecute(std::string_view portal) { OnExecute(portal, 0); }

void StatementTracker::OnExecute(std::string_view portal, int32_t max_rows) {
  if (skipping_until_sync_) return;
  AnalyzedStatementPtr statement = ExpectedPortalStatement(portal);
  Op& op = Push(OpKind::kExecute);
  op.name = std::string(portal);
  op.max_rows = max_rows;
  op.first_intent = NextIntent(statement, true, op.sent_us);
}

void StatementTracker::OnClose(char kind, std::string_view name) {
  if (skipping_until_sync_) return;
  Op& op = Push(OpKind::kClose);
  op.target = kind;
  op.name = std::string(name);
}

void StatementTracker::OnFunctionCall() {
  if (skipping_until_sync_) return;
  Op& op = Push(OpKind::kFunctionCall);
  op.first_intent = NextIntent(Placeholder("-- fastpath function call", StatementClass::kProcedure), false, op.sent_us);
}

uint64_t StatementTracker::NextIntent(const AnalyzedStatementPtr& statement, bool extended, int64_t sent_us) {
  const uint64_t id = next_intent_++;
  if (on_intent_) on_intent_(id, statement, extended, sent_us);
  return id;
}

AnalyzedStatementPtr StatementTracker::ExpectedPortalStatement(std::string_view portal) {
  for (auto bind = ops_.rbegin(); bind != ops_.rend(); ++bind) {
    if (bind->kind != OpKind::kBind || bind->name != portal) continue;
    // The statement that Bind names: a Parse sent before it, else one the server has.
    for (auto parse = std::next(bind); parse != ops_.rend(); ++parse) {
      if (parse->kind == OpKind::kParse && parse->name == bind->statement_name) return parse->statement;
    }
    return StatementNamed(bind->statement_name);
  }
  return PortalStatement(portal);
}

uint64_t StatementTracker::SettledThrough() const {
  uint64_t through = next_intent_ - 1;
  for (const Op& op : ops_) {
    if (op.first_intent == 0) continue;
    // A Query's statements before the running one have their records.
    const uint64_t first_open = op.first_intent + (op.kind == OpKind::kQuery ? op.next_statement : 0);
    // A failed Query runs nothing more: its remaining statements are settled.
    if (op.kind == OpKind::kQuery && op.failed) continue;
    if (op.kind == OpKind::kFunctionCall && op.answered) continue;
    through = first_open - 1;
    break;
  }
  if (!held_intents_.empty()) through = std::min(through, *held_intents_.begin() - 1);
  return through;
}

void StatementTracker::Hold(Portal& portal, const Op& op) {
  portal.held.emplace();
  portal.held->record = NewRecord(op, /*extended=*/true, portal.statement);
  portal.held->start_us = StartOf(op);
  if (portal.held->record.intent_id != 0) held_intents_.insert(portal.held->record.intent_id);
}

StatementRecord StatementTracker::Release(Portal& portal) {
  StatementRecord r = std::move(portal.held->record);
  if (r.intent_id != 0) {
    if (auto it = held_intents_.find(r.intent_id); it != held_intents_.end()) held_intents_.erase(it);
  }
  return r;
}

bool StatementTracker::OnAgentQuery(std::string injected_error) {
  if (skipping_until_sync_ || copy_in_active_) return false;
  Push(OpKind::kAgentQuery).injected_error = std::move(injected_error);
  return true;
}

bool StatementTracker::OnAgentFailure() {
  if (skipping_until_sync_ || copy_in_active_) return false;
  Push(OpKind::kAgentFailure);
  return true;
}

bool StatementTracker::AgentFailureAtHead() {
  const Op* op = Head();
  return op != nullptr && op->kind == OpKind::kAgentFailure;
}

bool StatementTracker::AgentQueryAtHead() {
  const Op* op = Head();
  return op != nullptr && op->kind == OpKind::kAgentQuery;
}

void StatementTracker::OnCopyDone() {
  if (copy_in_active_) {  // the server leaves copy-in here; later Syncs count again
    copy_in_active_ = false;
    return;
  }
  // Not yet known to be in copy-in (CopyInResponse still on its way): mark the position.
  Push(OpKind::kCopyEnd);
}

void StatementTracker::OnCopyFail() { OnCopyDone(); }

void StatementTracker::OnSync(std::string injected_error) {
  // 55.2.6: "The backend will ignore Flush and Sync messages received during copy-in mode."
  if (copy_in_active_) return;
  Op& op = Push(OpKind::kSync);
  op.injected_error = std::move(injected_error);
  op.batch_failed = skipping_until_sync_ && !agent_failed_batch_;
  skipping_until_sync_ = false;
  agent_failed_batch_ = false;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

StatementTracker::Op& StatementTracker::Push(OpKind kind) {
  ops_.emplace_back(kind);
  ops_.back().sent_us = Now();
  return ops_.back();
}

StatementTracker::Op* StatementTracker::Head() {
  // CopyDone/CopyFail outside copy-in are ignored by the server (PostgresMain accepts and drops
  // them), so a marker that was not consumed by a CopyInResponse answers nothing.
  while (!ops_.empty() && ops_.front().kind == OpKind::kCopyEnd) ops_.pop_front();
  return ops_.empty() ? nullptr : &ops_.front();
}

AnalyzedStatementPtr StatementTracker::StatementNamed(std::string_view name) {
  if (auto* s = statements_.Find(name)) return *s;
  return Placeholder("-- unknown prepared statement \"" + std::string(name) + "\"", StatementClass::kUnknown);
}

AnalyzedStatementPtr StatementTracker::PortalStatement(std::string_view portal) {
  if (auto* p = portals_.Find(portal)) return p->statement;
  return Placeholder("-- unknown portal \"" + std::string(portal) + "\"", StatementClass::kUnknown);
}

int64_t StatementTracker::StartOf(const Op& op) const {
  if (op.started_us != 0) return op.started_us;
  // The server works through messages in order: an operation starts when it was sent or when
  // the one before it finished, whichever is later.
  return std::max(op.sent_us, last_completion_us_);
}

StatementRecord StatementTracker::NewRecord(const Op& op, bool extended, AnalyzedStatementPtr statement) const {
  StatementRecord r;
  r.time_unix_us = op.sent_us;
  r.extended = extended;
  r.statement = std::move(statement);
  if (op.first_intent != 0) r.intent_id = op.first_intent + (op.kind == OpKind::kQuery ? op.next_statement : 0);
  return r;
}

void StatementTracker::Emit(StatementRecord record) { records_.push_back(std::move(record)); }

void StatementTracker::EndPortal(std::string_view name) {
  if (auto* p = portals_.Find(name); p != nullptr && p->held.has_value()) {
    // Closed, replaced or ended with its transaction before it completed: report what ran.
    StatementRecord r = Release(*p);
    r.rows = p->held->rows;
    r.duration_us = Now() - p->held->start_us;
    Emit(std::move(r));
  }
  portals_.Erase(name);
}

void StatementTracker::EndAllPortals() {
  std::vector<std::string> held;
  portals_.ForEach([&](const std::string& name, Portal& p) {
    if (p.held.has_value()) held.push_back(name);
  });
  for (auto it = held.rbegin(); it != held.rend(); ++it) EndPortal(*it);  // oldest first
  portals_.Clear();
}

void StatementTracker::ApplySessionEffects(const AnalyzedStatement& statement, std::string_view tag) {
  // SQL PREPARE/DEALLOCATE share the namespace of protocol-level prepared statements.
  if (tag == "DEALLOCATE ALL" || tag == "DISCARD ALL") {
    statements_.Clear();
  } else if (tag == "DEALLOCATE" && !statement.deallocate_name.empty()) {
    statements_.Erase(statement.deallocate_name);
  }
}

void StatementTracker::EnterCopyIn(Op& op) {
  op.copy_in = true;
  // Syncs the frontend sent between the COPY and its CopyDone/CopyFail are ignored by the
  // server (55.2.6); libpq sends one right after Execute.
  auto it = ops_.begin() + 1;
  while (it != ops_.end() && it->kind != OpKind::kCopyEnd) {
    it = it->kind == OpKind::kSync ? ops_.erase(it) : it + 1;
  }
  if (it == ops_.end()) {
    copy_in_active_ = true;
  } else {
    ops_.erase(it);
  }
}

void StatementTracker::SkipToSync() {
  // 55.2.3: after an error in an extended-query message the server discards messages until Sync.
  ops_.pop_front();
  while (!ops_.empty() && ops_.front().kind != OpKind::kSync) ops_.pop_front();
  if (ops_.empty()) {
    skipping_until_sync_ = true;
  } else {
    ops_.front().batch_failed = true;
  }
  last_completion_us_ = Now();
}

absl::Status StatementTracker::Complete(Op& op) {
  if (op.copy_in) copy_in_active_ = false;
  last_completion_us_ = Now();
  ops_.pop_front();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Backend messages.

absl::Status StatementTracker::OnParseComplete() {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kAgentFailure) {
    statements_.Erase("");  // the server's unnamed statement is the agent's now
    return absl::OkStatus();
  }
  if (op == nullptr || op->kind != OpKind::kParse) return Desync("ParseComplete");
  // The unnamed statement ("") is simply replaced; a named one only reaches here if it was new.
  statements_.Put(op->name, op->statement);
  return Complete(*op);
}

absl::Status StatementTracker::OnBindComplete() {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kAgentFailure) {
    EndPortal("");  // and so is its unnamed portal
    return absl::OkStatus();
  }
  if (op == nullptr || op->kind != OpKind::kBind) return Desync("BindComplete");
  EndPortal(op->name);  // the unnamed portal is replaced by the next Bind
  portals_.Put(op->name, Portal{StatementNamed(op->statement_name), std::nullopt});
  return Complete(*op);
}

absl::Status StatementTracker::OnCloseComplete() {
  Op* op = Head();
  if (op == nullptr || op->kind != OpKind::kClose) return Desync("CloseComplete");
  if (op->target == 'S') {
    statements_.Erase(op->name);
  } else {
    EndPortal(op->name);
  }
  return Complete(*op);
}

absl::Status StatementTracker::OnParameterDescription() {
  Op* op = Head();
  if (op == nullptr || op->kind != OpKind::kDescribe || op->target != 'S' || op->got_parameter_description) {
    return Desync("ParameterDescription");
  }
  op->got_parameter_description = true;
  return absl::OkStatus();
}

absl::Status StatementTracker::OnRowDescription() {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kQuery && !op->failed &&
      (op->next_statement < op->statements.size() || IsCurrentUnparsed(op->statements, op->next_statement))) {
    return absl::OkStatus();  // describes the rows of the running statement
  }
  if (op != nullptr && op->kind == OpKind::kDescribe && (op->target != 'S' || op->got_parameter_description)) {
    return Complete(*op);
  }
  return Desync("RowDescription");
}

absl::Status StatementTracker::OnNoData() {
  Op* op = Head();
  if (op == nullptr || op->kind != OpKind::kDescribe || (op->target == 'S' && !op->got_parameter_description)) {
    return Desync("NoData");
  }
  return Complete(*op);
}

absl::Status StatementTracker::OnCommandComplete(std::string_view tag) {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kQuery) {
    if (op->failed || op->next_statement >= op->statements.size()) return Desync("CommandComplete");
    const int64_t now = Now();
    AnalyzedStatementPtr statement = op->statements[op->next_statement];
    if (!statement) statement = Placeholder("", StatementClass::kUnknown);
    StatementRecord r = NewRecord(*op, /*extended=*/false, statement);
    r.command_tag = std::string(tag);
    r.rows = RowsFromCommandTag(tag);
    r.duration_us = now - StartOf(*op);
    Emit(std::move(r));
    ApplySessionEffects(*statement, tag);
    // Text libpg_query could not parse may hold several statements for a newer server: keep
    // attributing completions to it rather than calling the server wrong.
    if (statement->parsed) ++op->next_statement;
    op->started_us = now;  // the next statement starts when this one completed
    if (op->copy_in) {
      op->copy_in = false;
      copy_in_active_ = false;
    }
    last_completion_us_ = now;
    return absl::OkStatus();
  }
  if (op != nullptr && op->kind == OpKind::kExecute) {
    const int64_t now = Now();
    Portal* portal = portals_.Find(op->name);
    StatementRecord r;
    if (portal != nullptr && portal->held.has_value()) {
      r = Release(*portal);
      const int64_t final_rows = RowsFromCommandTag(tag);
      r.rows = final_rows < 0 ? -1 : portal->held->rows + final_rows;
      r.duration_us = now - portal->held->start_us;
      portal->held.reset();
    } else {
      r = NewRecord(*op, /*extended=*/true, PortalStatement(op->name));
      r.rows = RowsFromCommandTag(tag);
      r.duration_us = now - StartOf(*op);
    }
    r.command_tag = std::string(tag);
    AnalyzedStatementPtr statement = r.statement;
    Emit(std::move(r));
    ApplySessionEffects(*statement, tag);
    return Complete(*op);
  }
  return Desync("CommandComplete");
}

absl::Status StatementTracker::OnEmptyQueryResponse() {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kQuery && !op->failed &&
      (op->statements.empty() || IsCurrentUnparsed(op->statements, op->next_statement))) {
    op->next_statement = op->statements.size();
    op->failed = true;  // nothing more can follow but ReadyForQuery
    return absl::OkStatus();
  }
  if (op != nullptr && op->kind == OpKind::kExecute) return Complete(*op);
  return Desync("EmptyQueryResponse");
}

absl::Status StatementTracker::OnPortalSuspended() {
  Op* op = Head();
  if (op == nullptr || op->kind != OpKind::kExecute) return Desync("PortalSuspended");
  Portal* portal = portals_.Find(op->name);
  if (portal == nullptr) portal = &portals_.Put(op->name, Portal{PortalStatement(op->name), std::nullopt});
  if (!portal->held.has_value()) Hold(*portal, *op);
  // A portal is suspended exactly when Execute's row limit was reached (55.2.3).
  if (op->max_rows > 0) portal->held->rows += op->max_rows;
  return Complete(*op);
}

absl::Status StatementTracker::OnCopyInResponse() {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kQuery && !op->failed && op->next_statement < op->statements.size()) {
    EnterCopyIn(*op);
    return absl::OkStatus();
  }
  if (op != nullptr && op->kind == OpKind::kExecute) {
    EnterCopyIn(*op);
    return absl::OkStatus();
  }
  return Desync("CopyInResponse");
}

absl::Status StatementTracker::OnCopyOutResponse() {
  Op* op = Head();
  if (op != nullptr && op->kind == OpKind::kQuery && !op->failed && op->next_statement < op->statements.size()) {
    return absl::OkStatus();
  }
  if (op != nullptr && op->kind == OpKind::kExecute) return absl::OkStatus();
  return Desync("CopyOutResponse");
}

AnalyzedStatementPtr StatementTracker::RunningStatement() {
  Op* op = Head();
  if (op == nullptr) return nullptr;
  if (op->kind == OpKind::kQuery && !op->failed && op->next_statement < op->statements.size()) {
    return op->statements[op->next_statement];
  }
  if (op->kind == OpKind::kExecute) return PortalStatement(op->name);
  return nullptr;
}

absl::Status StatementTracker::OnFunctionCallResponse() {
  Op* op = Head();
  if (op == nullptr || op->kind != OpKind::kFunctionCall || op->answered) return Desync("FunctionCallResponse");
  StatementRecord r = NewRecord(*op, /*extended=*/false,
                                Placeholder("-- fastpath function call", StatementClass::kProcedure));
  const int64_t now = Now();
  r.duration_us = now - StartOf(*op);
  Emit(std::move(r));
  op->answered = true;
  last_completion_us_ = now;
  return absl::OkStatus();
}

absl::Status StatementTracker::OnErrorResponse(std::string_view sqlstate, std::string_view message) {
  Op* op = Head();
  if (op == nullptr) return absl::OkStatus();  // e.g. FATAL from idle_session_timeout or a terminate
  const int64_t now = Now();
  auto fail = [&](StatementRecord r, int64_t start_us) {
    r.sqlstate = std::string(sqlstate);
    r.error = std::string(message);
    r.duration_us = now - start_us;
    Emit(std::move(r));
  };
  if (op->copy_in) copy_in_active_ = false;  // any error ends copy-in
  if (op->kind == OpKind::kAgentFailure) {
    // Failed as meant: the server skips to the Sync, which the relay sent right after the
    // caller's refused messages (nothing of the caller's is between), and whose refusal stays.
    EndPortal("");
    statements_.Erase("");
    last_completion_us_ = now;
    ops_.pop_front();
    if (ops_.empty()) {
      // The caller's Sync is not sent yet (the error came first): skipping, but the batch
      // failed by the agent's hand, so the Sync's refusal must still be written.
      skipping_until_sync_ = true;
      agent_failed_batch_ = true;
    }
    return absl::OkStatus();
  }
  switch (op->kind) {
    case OpKind::kQuery:
      // The rest of the Query string is not executed; ReadyForQuery follows (55.2.2).
      if (!op->failed && op->next_statement < op->statements.size()) {
        AnalyzedStatementPtr statement = op->statements[op->next_statement];
        fail(NewRecord(*op, false, statement ? statement : Placeholder("", StatementClass::kUnknown)), StartOf(*op));
      }
      op->failed = true;
      op->copy_in = false;
      last_completion_us_ = now;
      return absl::OkStatus();
    case OpKind::kFunctionCall:
      if (!op->answered) {
        fail(NewRecord(*op, false, Placeholder("-- fastpath function call", StatementClass::kProcedure)),
             StartOf(*op));
      }
      op->answered = true;
      last_completion_us_ = now;
      return absl::OkStatus();
    case OpKind::kSync:
      // The implicit transaction's COMMIT at Sync failed (e.g. a deferred constraint): the
      // statements were already recorded as completed; ReadyForQuery follows.
      op->batch_failed = true;
      last_completion_us_ = now;
      return absl::OkStatus();
    case OpKind::kParse:
      // The caller tried to run this text: record it even though it never executed.
      fail(NewRecord(*op, true, op->statement), StartOf(*op));
      break;
    case OpKind::kBind:
      fail(NewRecord(*op, true, StatementNamed(op->statement_name)), StartOf(*op));
      break;
    case OpKind::kExecute: {
      Portal* portal = portals_.Find(op->name);
      if (portal != nullptr && portal->held.has_value()) {
        StatementRecord r = Release(*portal);
        r.rows = portal->held->rows;
        int64_t start = portal->held->start_us;
        portal->held.reset();
        fail(std::move(r), start);
      } else {
        fail(NewRecord(*op, true, PortalStatement(op->name)), StartOf(*op));
      }
      break;
    }
    case OpKind::kDescribe:
    case OpKind::kClose:
    case OpKind::kCopyEnd:
      break;  // nothing was run
    case OpKind::kAgentQuery:
      return absl::OkStatus();  // the relay keeps the agent's own errors; a FATAL ends everything anyway
    case OpKind::kAgentFailure:
      break;  // handled above
  }
  SkipToSync();
  return absl::OkStatus();
}

absl::StatusOr<std::string> StatementTracker::OnReadyForQuery(char status) {
  Op* op = Head();
  if (op == nullptr) return Desync("ReadyForQuery");
  std::string inject;
  switch (op->kind) {
    case OpKind::kSync:
      // Drop the refusal if the server already failed this batch: the refused messages would
      // have been skipped anyway, and a client expects one ErrorResponse per batch.
      if (!op->batch_failed) inject = std::move(op->injected_error);
      break;
    case OpKind::kQuery:
      if (!op->failed && op->next_statement < op->statements.size() &&
          !IsCurrentUnparsed(op->statements, op->next_statement)) {
        return Desync("ReadyForQuery before the Query's statements completed");
      }
      break;
    case OpKind::kFunctionCall:
      if (!op->answered) return Desync("ReadyForQuery before FunctionCallResponse");
      break;
    case OpKind::kAgentQuery:
      inject = std::move(op->injected_error);
      break;
    default:
      return Desync("ReadyForQuery");
  }
  (void)Complete(*op);
  copy_in_active_ = false;
  last_ready_status_ = status;
  // Portals live until the end of their transaction (55.2.3): idle means they are gone.
  if (status == 'I') EndAllPortals();
  return inject;
}

std::vector<StatementRecord> StatementTracker::TakeRecords() {
  std::vector<StatementRecord> out;
  out.swap(records_);
  return out;
}

size_t StatementTracker::PendingOperations() const { return ops_.size(); }

bool StatementTracker::IdleAtReadyForQuery() const {
  return ops_.empty() && last_ready_status_ == 'I' && !copy_in_active_ && !skipping_until_sync_;
}

}  // namespace pgward::inspect

// StatementTracker: follows one session's protocol conversation (frontend messages as forwarded
// upstream, backend responses as they return) and emits one StatementRecord per statement.
// Matching follows the Postgres protocol chapter "Message Flow" (55.2): simple query, extended
// query, pipelining, COPY. A backend message the conversation does not expect is a desync.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/inspect/lru_cache.h"
#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {

struct StatementRecord {
  std::string session_id;    // left empty; the caller fills it
  int64_t time_unix_us = 0;  // when the statement was sent upstream
  bool extended = false;     // protocol: extended vs simple
  AnalyzedStatementPtr statement;  // never null (placeholders for unknown names)
  std::string command_tag;   // from CommandComplete ("" on error)
  int64_t rows = -1;         // from the command tag ("SELECT 5"->5, "INSERT 0 3"->3, else -1)
  std::string sqlstate, error;  // on failure
  int64_t duration_us = 0;
  uint64_t intent_id = 0;    // the intent (OnIntent) this record completes; 0: none (a Parse error)
};

// "SELECT 5" -> 5, "INSERT 0 3" -> 3, "CREATE TABLE" -> -1: the last word if it is a count.
int64_t RowsFromCommandTag(std::string_view tag);

// Not thread-safe: one per session, driven by the relay thread(s) of that session in order.
//
// Choices the protocol leaves open:
// - PortalSuspended: the record is HELD until the portal completes (CommandComplete, error, or the
//   portal is closed/replaced/ended with its transaction), so a statement fetched in chunks gives
//   one record. Its time is the first Execute's, rows add max_rows per suspension (when the
//   Execute overload with max_rows was used) plus the final tag's count. A portal that ends
//   without completing gives a record with an empty command_tag and no sqlstate.
// - Statement durations start when the statement was sent or when the previous response of the
//   conversation completed, whichever is later, so pipelined statements do not include the
//   time spent waiting behind earlier ones. In a multi-statement Query, statement k>1 starts
//   at statement k-1's completion.
// - Server-side state (named statements, portals) changes when the server CONFIRMS it
//   (ParseComplete, BindComplete, CloseComplete, DEALLOCATE/DISCARD ALL), exactly as the server
//   applies it in order; skipped messages change nothing.
// - An injected error is dropped if the server already reported an error in that Sync's batch:
//   the refused messages would have been skipped anyway, and a client expects one ErrorResponse
//   per batch.
class StatementTracker {
 public:
  static constexpr size_t kMaxNamedStatements = 10000;  // least recently used is forgotten
  static constexpr size_t kMaxPortals = 10000;

  // now_us: injectable clock (microseconds since epoch) for tests; nullptr = system clock.
  explicit StatementTracker(std::function<int64_t()> now_us = nullptr);

  // Intents: every statement sent to run (each statement of a Query, each Execute, each
  // FunctionCall) gets the next intent id of the session (1, 2, ...) and is reported here as it
  // is sent, with the statement it will run as far as the messages sent so far tell. Its
  // record later carries the id (StatementRecord::intent_id); SettledThrough() says which
  // intents can produce no record any more.
  using IntentObserver =
      std::function<void(uint64_t intent_id, const AnalyzedStatementPtr& statement, bool extended, int64_t sent_us)>;
  void SetIntentObserver(IntentObserver observer) { on_intent_ = std::move(observer); }
  // Every intent with an id <= this has produced its record (TakeRecords) or never will
  // (skipped after an error, or a further Execute of a portal whose record an earlier one holds).
  uint64_t SettledThrough() const;

  // Frontend messages, in the order they are forwarded upstream:
  void OnQuery(std::vector<AnalyzedStatementPtr> statements);  // simple; empty vector = empty query
  void OnParse(std::string_view statement_name, AnalyzedStatementPtr statement);
  void OnBind(std::string_view portal, std::string_view statement_name);
  void OnDescribe(char kind, std::string_view name);
  void OnExecute(std::string_view portal);  // same as max_rows = 0 (unknown/unlimited)
  void OnExecute(std::string_view portal, int32_t max_rows);
  void OnClose(char kind, std::string_view name);
  void OnFunctionCall();
  // CopyDone / CopyFail from the frontend. The relay MUST report them: during copy-in the
  // server ignores Sync (55.2.6), and libpq sends Sync both after Execute and after CopyDone,
  // so only these tell which Syncs will get a ReadyForQuery. (CopyData is not needed.)
  void OnCopyDone();
  void OnCopyFail();
  // The agent's own simple Query (the identity check), written upstream right after the
  // frontend messages reported so far. Returns false if the server will discard it (it is
  // skipping to a Sync after an extended-protocol error), in which case it is not tracked.
  // Its responses belong to the agent: while AgentQueryAtHead(), the relay keeps RowDescription,
  // DataRow, CommandComplete, ErrorResponse and NoticeResponse from the caller and the tracker,
  // and reports only the ReadyForQuery that ends it (OnReadyForQuery). It is never recorded.
  // `injected_error`: a complete ErrorResponse that OnReadyForQuery returns for the relay to
  // write just before the agent query's ReadyForQuery, which then goes to the caller (a refusal
  // the server raised, so that it fails the caller's transaction as a server error would).
  bool OnAgentQuery(std::string injected_error = {});
  bool AgentQueryAtHead();
  // The agent's own extended-protocol statement that fails in the server (Parse, Bind and
  // Execute of the unnamed statement and portal), written in place of a refused message of an
  // extended batch so that the server fails the batch (and an open transaction) itself. Its
  // ParseComplete, BindComplete and error belong to the agent (while AgentFailureAtHead(), the
  // relay passes them to OnParseComplete / OnBindComplete / OnErrorResponse and keeps them from
  // the caller); its error does not count as the batch's failure, so the Sync's injected
  // refusal is still written. Returns false if the server is known to skip to a Sync already
  // (then nothing is to be written: the batch has failed anyway).
  bool OnAgentFailure();
  bool AgentFailureAtHead();
  // `injected_error`: non-empty when the relay REFUSED messages of this batch and replaced them
  // with this Sync; the bytes (a complete ErrorResponse) are returned by OnReadyForQuery for the
  // relay to write just before that ReadyForQuery, so the caller sees the refusal in order.
  void OnSync(std::string injected_error = {});

  // Backend messages. A message the conversation does not expect -> FailedPrecondition (desync;
  // the relay fails the session closed). DataRow, CopyData/CopyDone, NoticeResponse,
  // ParameterStatus and NotificationResponse are not passed here.
  absl::Status OnParseComplete();
  absl::Status OnBindComplete();
  absl::Status OnCloseComplete();
  absl::Status OnParameterDescription();
  absl::Status OnRowDescription();
  absl::Status OnNoData();
  absl::Status OnCommandComplete(std::string_view tag);
  absl::Status OnEmptyQueryResponse();
  absl::Status OnPortalSuspended();
  absl::Status OnCopyInResponse();
  absl::Status OnCopyOutResponse();
  absl::Status OnFunctionCallResponse();
  // Never a desync: a FATAL error may arrive at any time (e.g. idle_session_timeout).
  absl::Status OnErrorResponse(std::string_view sqlstate, std::string_view message);
  // Returns the bytes to inject before this ReadyForQuery (empty if none). `status` is the
  // transaction status byte ('I', 'T', 'E').
  absl::StatusOr<std::string> OnReadyForQuery(char status);

  // The statement the server is working on: the head Query's current statement or the head
  // Execute's portal statement; nullptr otherwise. Lets the relay check that a CopyInResponse or
  // CopyOutResponse answers a COPY (a server sending one for anything else is not trusted).
  AnalyzedStatementPtr RunningStatement();

  std::vector<StatementRecord> TakeRecords();  // completed statements since the last call, in order
  size_t PendingOperations() const;
  // True when nothing is pending and the last ReadyForQuery said idle ('I'; the login's, before
  // any): no transaction open, no COPY, no batch being skipped. The upstream pool's condition.
  bool IdleAtReadyForQuery() const;

 private:
  enum class OpKind {
    kQuery, kParse, kBind, kDescribe, kExecute, kClose, kFunctionCall, kSync, kCopyEnd, kAgentQuery, kAgentFailure
  };
  struct Op {
    explicit Op(OpKind k) : kind(k) {}
    OpKind kind;
    int64_t sent_us = 0;
    std::string name;       // Parse/Describe/Close: statement or portal; Bind/Execute: portal
    std::string statement_name;  // Bind
    char target = 0;        // Describe/Close: 'S' or 'P'
    int32_t max_rows = 0;   // Execute
    AnalyzedStatementPtr statement;             // Parse
    std::vector<AnalyzedStatementPtr> statements;  // Query
    size_t next_statement = 0;                  // Query: index of the running statement
    bool failed = false;                        // Query: an error ended it
    bool answered = false;                      // FunctionCall: response seen
    int64_t started_us = 0;                     // Query: when the running statement started (0: not yet)
    bool got_parameter_description = false;     // Describe 'S'
    bool copy_in = false;                       // Query/Execute: CopyInResponse seen
    std::string injected_error;                 // Sync, AgentQuery
    bool batch_failed = false;                  // Sync: server reported an error in its batch
    uint64_t first_intent = 0;                  // Query: of statements[0]; Execute, FunctionCall: its own; else 0
  };
  struct HeldRecord {  // a suspended portal's statement, not yet complete
    StatementRecord record;
    int64_t start_us = 0;
    int64_t rows = 0;
  };
  struct Portal {
    AnalyzedStatementPtr statement;
    std::optional<HeldRecord> held;
  };

  int64_t Now() const;
  Op& Push(OpKind kind);  // queues a frontend operation sent now
  absl::Status Desync(std::string_view what) const;
  // Drops CopyEnd markers that reached the head (the server ignores copy messages outside COPY).
  Op* Head();
  AnalyzedStatementPtr StatementNamed(std::string_view name);
  AnalyzedStatementPtr PortalStatement(std::string_view portal);
  int64_t StartOf(const Op& op) const;
  void Emit(StatementRecord record);
  StatementRecord NewRecord(const Op& op, bool extended, AnalyzedStatementPtr statement) const;
  void EndPortal(std::string_view name);   // flushes a held record, forgets the portal
  void Hold(Portal& portal, const Op& op);  // a suspended portal's record starts being held
  StatementRecord Release(Portal& portal);  // and stops
  uint64_t NextIntent(const AnalyzedStatementPtr& statement, bool extended, int64_t sent_us);
  // What an Execute of `portal` sent now will run: the latest Bind sent for it, else the portal.
  AnalyzedStatementPtr ExpectedPortalStatement(std::string_view portal);
  void EndAllPortals();
  void ApplySessionEffects(const AnalyzedStatement& statement, std::string_view tag);
  void SkipToSync();  // after an extended-protocol error
  void EnterCopyIn(Op& op);
  absl::Status Complete(Op& op);  // pops the head op, remembering when it completed

  std::function<int64_t()> now_us_;
  std::deque<Op> ops_;
  LruCache<AnalyzedStatementPtr> statements_{kMaxNamedStatements};  // as the server has them
  LruCache<Portal> portals_{kMaxPortals};
  std::vector<StatementRecord> records_;
  int64_t last_completion_us_ = 0;
  bool skipping_until_sync_ = false;  // server discards frontend messages until the next Sync
  bool agent_failed_batch_ = false;   // ... because of the agent's own failing statement (OnAgentFailure)
  bool copy_in_active_ = false;       // server ignores Sync until the frontend's CopyDone/Fail
  char last_ready_status_ = 'I';      // of the last ReadyForQuery; login ends at 'I'
  IntentObserver on_intent_;
  uint64_t next_intent_ = 1;
  std::multiset<uint64_t> held_intents_;  // intent ids of held records
};

}  // namespace pgward::inspect

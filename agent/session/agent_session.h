// One caller session on the agent: upstream login, then the inspected relay in both directions.
#pragma once

#include <asio.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/control/agent_token.h"
#include "agent/control/event_spool.h"
#include "agent/inspect/identity_check.h"
#include "agent/inspect/sql_analyzer.h"
#include "agent/inspect/statement_tracker.h"
#include "agent/session/session_stream.h"
#include "agent/session/statement_policy.h"
#include "agent/upstream/pinned_settings.h"
#include "agent/upstream/tls_contexts.h"
#include "agent/upstream/upstream_login.h"
#include "agent/upstream/upstream_policy.h"
#include "agent/upstream/upstream_pool.h"
#include "common/pgwire/message_reader.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::agent {


// Where a session's events go: the control stream's sequenced, acknowledged queue, and the
// on-disk spool (EventSpool) when the agent has one.
class SessionEventSink {
 public:
  virtual ~SessionEventSink() = default;
  virtual void EmitStatement(pgward::v1::StatementEvent event, StatementLink link = {}) = 0;
  virtual void EmitSessionEnded(pgward::v1::SessionEnded event) = 0;
  // Statements about to go upstream, written before they are forwarded. An error (the spool is
  // full or failed) means they must not be forwarded. Without a spool: OK, nothing kept.
  virtual absl::Status SpoolIntents(const std::string& /*session_id*/,
                                    const std::vector<pgward::v1::SpoolIntent>& /*intents*/) {
    return absl::OkStatus();
  }
  // Intents settled (their event emitted, or they never ran); `through`, when non-zero, is
  // written as the session's settled mark because no event carried it.
  virtual void IntentsSettled(const std::string& /*session_id*/, const std::vector<uint64_t>& /*intent_ids*/,
                              uint64_t /*through*/) {}
  // True while new statements must be refused: the spool is full or failed (fail closed).
  virtual bool SpoolRefuses() { return false; }
  // True while too many events await the gateway's acknowledgement: sessions then hold the
  // caller's next statements back (EventQueue's bound) instead of piling up more events.
  virtual bool Backlogged() { return false; }
};

struct SessionDeps {
  pgward::v1::AgentService::Stub* stub = nullptr;
  net::GrpcDriver* grpc = nullptr;  // runs the session streams' completions; required
  std::string agent_name;
  AgentToken* token = nullptr;  // required; read as each session stream opens
  TlsContexts* tls = nullptr;
  inspect::SqlAnalyzer* analyzer = nullptr;
  SessionEventSink* sink = nullptr;
  // The agent host's own allow-lists and password rules; required.
  const UpstreamPolicy* upstream_policy = nullptr;
  // Runs SCRAM's PBKDF2 away from the I/O threads; required.
  asio::any_io_executor crypto_executor;
  uint32_t max_message_bytes = 64u << 20;
  // Logged-in upstream connections kept between sessions of one principal; null: none.
  UpstreamPool* upstream_pool = nullptr;
};

// Lives on its own strand. Run() owns the flow; Cancel() and Stop() may be called from any
// thread and post to the strand.
class AgentSession : public std::enable_shared_from_this<AgentSession> {
 public:
  // The session's states; every change goes through SetState().
  enum class State {
    kLoggingIn,   // opening and authenticating the upstream connection
    kOpening,     // upstream ready, announcing the session on its gRPC stream
    kRelaying,    // bytes flow both ways, every message inspected
    kClosing,     // one side ended; draining the other
    kClosed,
  };

  AgentSession(asio::any_io_executor strand, pgward::v1::SessionGrant grant, SessionDeps deps);
  ~AgentSession();

  const std::string& id() const { return grant_.session_id(); }
  asio::awaitable<void> Run();
  // Postgres cancel for the running statement, via a CancelRequest to the upstream backend.
  void Cancel();
  // Ends the session (the gateway's EndSession, agent shutdown): cancels what runs upstream,
  // closes the upstream connection and reports SessionEnded with `reason`.
  void Stop(std::string reason);
  // The gateway changed the session's effective policy (its grants were updated, deleted or
  // added). The next statement is judged by it. A change into or out of read-only also SETs
  // default_transaction_read_only upstream, at the next round trip that starts outside a
  // transaction (a SET inside one would be undone by its ROLLBACK). Safe from any thread.
  void UpdatePolicy(pgward::v1::Policy policy);
  // Ends a relaying session from inside the relay (on the strand): the caller receives what was
  // relayed so far up to the last whole message, then FATAL `sqlstate` with `message`, and the
  // session ends with `end_reason`. Nothing the server sends afterwards reaches the caller.
  // The first call wins; later ones are ignored.
  void EndWithFatal(std::string_view sqlstate, std::string_view message, std::string_view end_reason);

 private:
  class FrontendHandler;
  class BackendHandler;

  void SetState(State next);
  asio::awaitable<void> Fail(std::string sqlstate, std::string message);
  asio::awaitable<void> GatewayToUpstream();
  asio::awaitable<void> UpstreamToGateway();
  asio::awaitable<void> ReadUpstream();
  asio::awaitable<void> WriteToGateway();
  void EmitRecords();
  void EmitEnded(const std::string& reason);
  // The tracker's intent: kept until its record comes, spooled before the bytes go upstream.
  void OnIntent(uint64_t intent_id, const inspect::AnalyzedStatementPtr& statement, bool extended, int64_t sent_us);
  // Writes the intents of the caller bytes just handled to the spool; false: not forwarded,
  // the session ends (the spool failed).
  bool SpoolNewIntents();
  // When the spool is full or failed, the refusal of a statement the caller sends now.
  std::optional<PolicyDecision> SpoolRefusal();
  // The decision on a statement the caller sends now: the spool's refusal, else the grant's policy.
  PolicyDecision Decide(const inspect::AnalyzedStatement& statement);
  // The fields every statement event of this session shares.
  pgward::v1::StatementEvent NewEvent(const inspect::AnalyzedStatement* statement, bool extended,
                                      int64_t time_unix_us) const;
  void EmitDenied(const inspect::AnalyzedStatement& statement, bool extended, const PolicyDecision& decision);
  std::string StatementText(const inspect::AnalyzedStatement& statement) const;
  // What the audit keeps of an error message: redacted unless the grant captures literals.
  std::string ErrorText(std::string_view message, std::string_view sqlstate,
                        const inspect::AnalyzedStatement* statement) const;
  void CloseUpstream();
  // True when the session ended by the caller's Terminate with the upstream connection at
  // ReadyForQuery idle and nothing in flight: the only state in which it may go back to the pool.
  bool UpstreamReusable() const;
  // Sends a CancelRequest upstream unless one is in flight; on the strand.
  void StartUpstreamCancel();
  // Cancels what the backend runs and closes the upstream connection (kill, stop, deadline).
  void EndUpstreamNow();
  // Appends the identity check (the agent's own Query) to the bytes bound upstream, if the
  // server will run it; otherwise leaves it owed.
  void AppendIdentityCheck(std::string& out);
  // The identity check's ReadyForQuery arrived: act on its verdict. Also ends the agent's
  // session-id restore (below), whose answer arrives through the same path.
  void OnIdentityCheckDone();
  // On a reused upstream connection pgward.session_id was SET, not sent at start-up, so the
  // caller's RESET ALL or DISCARD ALL would return it to the id of the session that opened the
  // connection: after such a round trip the agent SETs it again (its answer stays in the agent).
  void AppendSessionIdRestore(std::string& out);
  // A refused simple Query: in its place a statement that fails in the server (so that an open
  // transaction is left failed, as by a server error), whose error the caller never sees; the
  // refusal is written before its ReadyForQuery instead. False if the server would discard it
  // (skipping to a Sync, or in a COPY): then nothing was written.
  bool AppendRefusalQuery(std::string& out, std::string refusal);
  // A refused message of an extended batch: the same failing statement as Parse, Bind and
  // Execute of the unnamed statement and portal, so the server fails the batch (and an open
  // transaction) itself and skips to the caller's Sync; the refusal (refusal_) is written
  // before that Sync's ReadyForQuery. Nothing is written if the server skips already.
  void AppendRefusalBatch(std::string& out);
  // Sends the SET that gives the upstream connection the current policy's
  // default_transaction_read_only, if it is owed and the server is idle outside a transaction.
  void AppendReadOnlySetting(std::string& out);
  // The policy's read-only mode differs from the one the upstream login pinned.
  bool ReadOnlyDiverged() const;
  // OK when the statement the server is running is of class `want` (a COPY direction).
  absl::Status CheckCopyResponse(inspect::StatementClass want, std::string_view message_name);

  asio::any_io_executor strand_;
  pgward::v1::SessionGrant grant_;
  SessionDeps deps_;
  State state_ = State::kLoggingIn;
  SessionStream* stream_ = nullptr;  // deletes itself in OnDone; nulled once Finished()
  std::shared_ptr<StreamSignals> stream_signals_;  // outlives stream_, for Stop()
  UpstreamConnection upstream_;
  inspect::StatementTracker tracker_;
  pgwire::MessageReader frontend_reader_;
  pgwire::MessageReader backend_reader_;
  std::string to_upstream_;           // coalesced frontend bytes of one gateway frame
  bool discard_until_sync_ = false;   // extended protocol after a refused message
  std::string refusal_;               // the ErrorResponse owed at the next Sync
  std::vector<pgward::v1::SpoolIntent> new_intents_;  // sent by the bytes being handled
  struct OpenIntent {
    uint64_t id = 0;
    pgward::v1::StatementEvent event;  // what is known before the result
  };
  std::deque<OpenIntent> open_intents_;  // sent, no record yet, in intent order
  bool client_terminated_ = false;
  std::string end_reason_;
  // Identity check, for sessions whose grant allows caller-supplied code (see identity_check.h).
  inspect::IdentityCheck identity_check_;
  bool check_identity_ = false;       // the grant allows the procedure class
  bool check_after_copy_ = false;     // the grant allows COPY FROM STDIN: check before the next round trip
  bool check_owed_ = false;           // a check is due before the caller's next round trip
  bool at_round_trip_start_ = true;   // the last caller message ended a round trip (Query or Sync)
  bool batch_ran_ = false;            // the extended batch so far has a Bind or Execute
  std::atomic<bool> stopping_{false};
  std::optional<ParameterWatch> parameter_watch_;  // from the login's ParameterStatus values
  std::string pending_fatal_;  // EndWithFatal's ErrorResponse, sent as the relay's last bytes
  // Where the bytes sent to the gateway end on a Postgres message boundary: at the end of the
  // last frame written (on_boundary_), and the offset of the last boundary in `to_gateway_`
  // (nullopt: none yet, and the previous frame ended mid-message). The reader cannot
  // say once it has failed, and a FATAL may only follow a whole message.
  bool on_boundary_ = true;
  std::optional<size_t> boundary_in_frame_ = size_t{0};
  // Upstream -> gateway: checked bytes not yet handed to gRPC (the frame being built), and the
  // hand-over between ReadUpstream and WriteToGateway (both on the session's executor).
  std::string to_gateway_;
  std::unique_ptr<net::AsyncSignal> gateway_data_;   // the reader added bytes, or finished
  std::unique_ptr<net::AsyncSignal> gateway_space_;  // the writer took the bytes, or failed
  bool reader_done_ = false;
  bool writer_done_ = false;
  bool unsent_failed_ = false;  // the reader stopped on bytes it could not check
  bool cancel_in_flight_ = false;  // one upstream CancelRequest at a time; extras coalesce
  std::string pool_key_;  // the upstream pool's key for this session; empty: not pooled
  bool upstream_reused_ = false;     // upstream_ came from the pool (see AppendSessionIdRestore)
  bool restore_owed_ = false;        // a session-id restore is due before the caller's next round trip
  bool batch_resets_ = false;        // the extended batch so far parsed a RESET ALL / DISCARD ALL
  // default_transaction_read_only as the login set it (on for a read-only grant), and whether
  // a SET to the current policy's value is owed (after a policy change, or a RESET ALL while
  // the two differ).
  bool login_read_only_ = false;
  bool read_only_owed_ = false;
  enum class AgentQuery { kIdentityCheck, kSessionIdRestore, kReadOnlySetting, kRefusal };
  std::deque<AgentQuery> agent_queries_;  // the agent's own queries in flight, in order
  // The upstream connection set aside for the pool at the caller's Terminate (upstream_.stream
  // is then a closed stand-in, so the relay's reader ends without touching it).
  std::unique_ptr<net::MaybeTlsStream> kept_upstream_;
};

}  // namespace pgward::agent

#include "agent/session/agent_session.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "agent/inspect/literals.h"
#include "agent/session/session_stream.h"
#include "agent/session/statement_gate.h"
#include "agent/session/statement_policy.h"
#include "agent/upstream/credential_resolver.h"
#include "common/net/scratch_buffer.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/sqlstate.h"
#include "common/pgwire/wire_writer.h"
#include "common/util/log.h"

namespace pgward::agent {
namespace {

using namespace asio::experimental::awaitable_operators;
// What may wait for the gateway while a frame is being written: one frame's worth.
constexpr size_t kMaxUnsentToGateway = 256 * 1024;
// insufficient_resources: the agent's event spool cannot take the statement (Appendix A).
constexpr std::string_view kSpoolRefusedState = "53000";
constexpr size_t kKeepFrameCapacity = 16 * 1024;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* StateName(AgentSession::State state) {
  switch (state) {
    case AgentSession::State::kLoggingIn: return "logging_in";
    case AgentSession::State::kOpening: return "opening";
    case AgentSession::State::kRelaying: return "relaying";
    case AgentSession::State::kClosing: return "closing";
    case AgentSession::State::kClosed: return "closed";
  }
  return "?";
}

}  // namespace

// Backend messages (Postgres -> caller): forwarded unchanged, matched to statements for the
// audit trail; DataRow and CopyData stream through without buffering.
class AgentSession::BackendHandler : public pgwire::MessageHandler {
 public:
  explicit BackendHandler(AgentSession& s) : s_(s) {}

  absl::Status OnMessage(const pgwire::MessageView& msg) override {
    if (!s_.pending_fatal_.empty()) return absl::OkStatus();  // ending: see EndWithFatal
    if (s_.tracker_.AgentQueryAtHead()) {
      if (std::optional<absl::Status> mine = OnIdentityCheckMessage(msg)) return *mine;
    }
    if (s_.tracker_.AgentFailureAtHead()) {
      if (std::optional<absl::Status> mine = OnAgentFailureMessage(msg)) return *mine;
    }
    std::string& out = s_.to_gateway_;
    inspect::StatementTracker& tracker = s_.tracker_;
    absl::Status status;
    switch (msg.type) {
      case '1': status = tracker.OnParseComplete(); break;
      case '2': status = tracker.OnBindComplete(); break;
      case '3': status = tracker.OnCloseComplete(); break;
      case 't': status = tracker.OnParameterDescription(); break;
      case 'T': status = tracker.OnRowDescription(); break;
      case 'n': status = tracker.OnNoData(); break;
      case 'I': status = tracker.OnEmptyQueryResponse(); break;
      case 's': status = tracker.OnPortalSuspended(); break;
      case 'G':
        status = s_.CheckCopyResponse(inspect::StatementClass::kCopyIn, "CopyInResponse");
        if (status.ok()) status = tracker.OnCopyInResponse();
        break;
      case 'H':
        status = s_.CheckCopyResponse(inspect::StatementClass::kCopyOut, "CopyOutResponse");
        if (status.ok()) status = tracker.OnCopyOutResponse();
        break;
      case 'V': status = tracker.OnFunctionCallResponse(); break;
      case 'C': {
        auto tag = pgwire::DecodeCommandComplete(msg.body);
        if (!tag.ok()) return tag.status();
        status = tracker.OnCommandComplete(*tag);
        break;
      }
      case 'E': {
        auto fields = pgwire::DecodeErrorOrNotice(msg.body);
        if (!fields.ok()) return fields.status();
        status = tracker.OnErrorResponse(fields->sqlstate, fields->message);
        // A FATAL (say, pg_terminate_backend) may arrive with nothing pending.
        if (fields->severity == "FATAL" || fields->severity == "PANIC") status = absl::OkStatus();
        break;
      }
      case 'Z': {
        auto ready = pgwire::DecodeReadyForQuery(msg.body);
        if (!ready.ok()) return ready.status();
        auto injected = tracker.OnReadyForQuery(*ready);
        if (!injected.ok()) return injected.status();
        out.append(*injected);
        break;
      }
      case 'S': {
        // A setting that decides who the session is or how SQL is lexed changed behind the
        // policy's back (set_config in a function, say): end the session, and do not pass the
        // new value on.
        auto parameter = pgwire::DecodeParameterStatus(msg.body);
        if (!parameter.ok()) return parameter.status();
        if (auto change = s_.parameter_watch_->Check(parameter->first, parameter->second)) {
          s_.EndWithFatal(pgwire::sqlstate::kAdminShutdown, change->message, change->end_reason);
          return absl::OkStatus();  // dropped: nothing after EndWithFatal reaches the caller
        }
        break;
      }
      case 'N':
      case 'A':
      case 'c':
        break;
      case 'W':
        return absl::FailedPreconditionError("replication (CopyBoth) is not supported through pgward");
      default:
        return absl::FailedPreconditionError(absl::StrCat(
            "unexpected ", AbslView(pgwire::TypeName(pgwire::Direction::kBackend, msg.type)), " from upstream"));
    }
    if (!status.ok()) return status;
    out.append(msg.raw);
    s_.boundary_in_frame_ = out.size();
    return absl::OkStatus();
  }

  absl::Status OnStreamedHeader(char type, uint32_t body_length, std::string_view header_raw) override {
    if (!s_.pending_fatal_.empty()) return absl::OkStatus();
    if (type == 'D' && s_.tracker_.AgentQueryAtHead()) {  // a row of the identity check
      check_row_active_ = true;
      check_row_oversized_ = body_length > inspect::IdentityCheck::kMaxValueBytes;
      check_row_.clear();
      return absl::OkStatus();
    }
    s_.to_gateway_.append(header_raw);
    return absl::OkStatus();
  }
  absl::Status OnStreamedBody(std::string_view chunk, bool last) override {
    if (!s_.pending_fatal_.empty()) return absl::OkStatus();
    if (check_row_active_) {
      if (!check_row_oversized_) check_row_.append(chunk);
      if (!last) return absl::OkStatus();
      check_row_active_ = false;
      if (check_row_oversized_) {
        s_.identity_check_.OnOversizedRow();
        return absl::OkStatus();
      }
      return s_.identity_check_.OnDataRow(check_row_);
    }
    std::string& out = s_.to_gateway_;
    out.append(chunk);
    if (last) s_.boundary_in_frame_ = out.size();
    return absl::OkStatus();
  }

 private:
  // The answer to the agent's identity check stays in the agent. nullopt: not part of it
  // (ParameterStatus and NotificationResponse are asynchronous; a FATAL is for the caller).
  // The answers to AppendRefusalBatch's messages stay in the agent; anything else (a FATAL, or
  // what the statement can never answer) takes the normal path, where it is judged.
  std::optional<absl::Status> OnAgentFailureMessage(const pgwire::MessageView& msg) {
    switch (msg.type) {
      case '1': return s_.tracker_.OnParseComplete();
      case '2': return s_.tracker_.OnBindComplete();
      case 'N': return absl::OkStatus();
      case 'E': {
        auto fields = pgwire::DecodeErrorOrNotice(msg.body);
        if (!fields.ok()) return fields.status();
        if (fields->severity == "FATAL" || fields->severity == "PANIC") return std::nullopt;
        return s_.tracker_.OnErrorResponse(fields->sqlstate, fields->message);
      }
      default:
        return std::nullopt;
    }
  }

  bool RefusalAtHead() const {
    return !s_.agent_queries_.empty() && s_.agent_queries_.front() == AgentQuery::kRefusal;
  }

  std::optional<absl::Status> OnIdentityCheckMessage(const pgwire::MessageView& msg) {
    switch (msg.type) {
      case 'T':
      case 'C':
      case 'N':
      case 'I':
        return absl::OkStatus();
      case 'E': {
        auto fields = pgwire::DecodeErrorOrNotice(msg.body);
        if (!fields.ok()) return fields.status();
        if (fields->severity == "FATAL" || fields->severity == "PANIC") return std::nullopt;
        // A refusal's failing statement is meant to fail (its error is replaced by the refusal).
        if (!RefusalAtHead()) s_.identity_check_.OnError();
        return absl::OkStatus();
      }
      case 'Z': {
        auto ready = pgwire::DecodeReadyForQuery(msg.body);
        if (!ready.ok()) return ready.status();
        const bool refusal = RefusalAtHead();
        auto injected = s_.tracker_.OnReadyForQuery(*ready);
        if (!injected.ok()) return injected.status();
        s_.OnIdentityCheckDone();
        if (refusal) {
          // The caller's: its Query was refused, and the server's transaction state is the truth.
          s_.to_gateway_.append(*injected);
          s_.to_gateway_.append(msg.raw);
          s_.boundary_in_frame_ = s_.to_gateway_.size();
        }
        return absl::OkStatus();
      }
      default:
        return std::nullopt;
    }
  }

  AgentSession& s_;
  std::string check_row_;  // a DataRow of the identity check, collected across reads
  bool check_row_active_ = false;
  bool check_row_oversized_ = false;
};

AgentSession::AgentSession(asio::any_io_executor strand, pgward::v1::SessionGrant grant, SessionDeps deps)
    : strand_(std::move(strand)),
      grant_(std::move(grant)),
      deps_(std::move(deps)),
      frontend_reader_(pgwire::Direction::kFrontend, deps_.max_message_bytes),
      backend_reader_(pgwire::Direction::kBackend, deps_.max_message_bytes),
      identity_check_({grant_.principal(), grant_.session_id(), "pgward:" + grant_.principal()}),
      check_identity_(AllowsClass(grant_.policy(), inspect::StatementClass::kProcedure)),
      check_after_copy_(AllowsClass(grant_.policy(), inspect::StatementClass::kCopyIn)),
      login_read_only_(grant_.policy().mode() == pgward::v1::MODE_READ_ONLY) {
  gateway_data_ = std::make_unique<net::AsyncSignal>(strand_);
  gateway_space_ = std::make_unique<net::AsyncSignal>(strand_);
  tracker_.SetIntentObserver([this](uint64_t intent_id, const inspect::AnalyzedStatementPtr& statement, bool extended,
                                    int64_t sent_us) { OnIntent(intent_id, statement, extended, sent_us); });
}

AgentSession::~AgentSession() = default;

void AgentSession::SetState(State next) {
  // Forward-only: a session never returns to an earlier state.
  if (static_cast<int>(next) < static_cast<int>(state_)) {
    Log(LogLevel::kError, "session", grant_.session_id(), " refused state change ",
        StateName(state_), " -> ", StateName(next));
    return;
  }
  Log(LogLevel::kDebug, "session", grant_.session_id(), " ", StateName(state_), " -> ", StateName(next));
  state_ = next;
}

asio::awaitable<void> AgentSession::Run() {
  auto self = shared_from_this();
  const auto& target = grant_.target();
  stream_ = OpenSessionStream(*deps_.stub, *deps_.grpc, strand_, deps_.agent_name, deps_.token->Get());
  stream_signals_ = stream_->signals();

  // The agent host decides what it reaches and reads, whatever the grant names.
  absl::Status allowed = deps_.upstream_policy->CheckTarget(target);
  if (!allowed.ok()) {
    Log(LogLevel::kWarn, "session", id(), " refused by the agent's policy (connection ", grant_.connection(),
        "): ", allowed.message());
    co_await Fail(std::string(pgwire::sqlstate::kConnectionFailure),
                  absl::StrCat("the database agent's policy does not allow connection \"", grant_.connection(),
                               "\" (its host or credential reference is not on the agent's allow-list); "
                               "see the agent log"));
    co_return;
  }
  auto parameters = UpstreamStartupParameters(grant_);
  if (!parameters.ok()) {
    Log(LogLevel::kWarn, "session", id(), " startup parameters refused: ", parameters.status().message());
    co_await Fail(std::string(pgwire::sqlstate::kProtocolViolation), std::string(parameters.status().message()));
    co_return;
  }

  auto password = ResolveCredential(target);
  if (!password.ok()) {
    Log(LogLevel::kWarn, "session", id(), " credential: ", password.status().message());
    co_await Fail(std::string(pgwire::sqlstate::kConnectionFailure),
                  "the database agent could not resolve the connection's credential; see the agent log");
    co_return;
  }
  // A connection kept from an earlier session of the same principal, connection, credential,
  // policy and startup parameters (upstream_pool.h), reset by DISCARD ALL when it was returned.
  std::optional<UpstreamConnection> pooled;
  if (deps_.upstream_pool != nullptr && deps_.upstream_pool->enabled()) {
    auto key = UpstreamPoolKey(grant_, *password);
    if (key.ok()) {
      pool_key_ = *std::move(key);
      pooled = co_await deps_.upstream_pool->Acquire(pool_key_, grant_.session_id());
    }
  }
  if (pooled) {
    upstream_ = *std::move(pooled);
    upstream_reused_ = true;
    Log(LogLevel::kDebug, "session", id(), " reuses upstream pid ", upstream_.backend_pid);
  } else {
    UpstreamLoginRequest request;
    request.target = &target;
    request.password = std::move(*password);
    request.startup_parameters = *std::move(parameters);
    request.policy = deps_.upstream_policy;
    request.crypto_executor = deps_.crypto_executor;
    auto login = co_await LoginUpstream(std::move(request), *deps_.tls);
    if (!login.ok()) {
      Log(LogLevel::kWarn, "session", id(), " upstream login: ", login.status().message());
      co_await Fail(std::string(pgwire::sqlstate::kConnectionFailure), std::string(login.status().message()));
      co_return;
    }
    upstream_ = std::move(*login);
  }
  parameter_watch_.emplace(upstream_.parameters);
  if (stopping_) {
    co_await Fail(std::string(pgwire::sqlstate::kAdminShutdown), "the session was ended before it started");
    co_return;
  }

  SetState(State::kOpening);
  auto* opened = stream_->outgoing().mutable_opened();
  opened->set_session_id(grant_.session_id());
  opened->set_ok(true);
  opened->set_upstream_pid(upstream_.backend_pid);
  for (const auto& [name, value] : upstream_.parameters) {
    auto* p = opened->add_parameters();
    p->set_name(name);
    p->set_value(value);
  }
  if (!co_await stream_->Write()) {
    end_reason_ = "gateway_gone";
  } else {
    stream_->outgoing().clear_opened();
    Log(LogLevel::kInfo, "session", id(), " relaying for ", grant_.principal(), " to ", target.host(),
        ":", target.port(), "/", target.database(), " (upstream pid ", upstream_.backend_pid, ")");
    SetState(State::kRelaying);
    // The gateway ends the session when the token expires; this is the second line of
    // defence should its timer or its EndSession not arrive.
    asio::steady_timer deadline(strand_);
    if (grant_.deadline_unix_ms() > 0) {
      const int64_t left_ms = std::max<int64_t>(0, grant_.deadline_unix_ms() - NowMicros() / 1000);
      deadline.expires_after(std::chrono::milliseconds(left_ms));
      deadline.async_wait([self](const asio::error_code& ec) {
        if (ec || self->state_ != State::kRelaying) return;
        self->EndWithFatal(pgwire::sqlstate::kAdminShutdown,
                           "pgward: the session ended because its access token expired; reconnect with a fresh token",
                           "token_expired");
        self->EndUpstreamNow();
      });
    }
    co_await (GatewayToUpstream() && UpstreamToGateway());
    deadline.cancel();
  }
  SetState(State::kClosing);
  CloseUpstream();
  co_await stream_->Finished();
  stream_ = nullptr;
  SetState(State::kClosed);
  EmitEnded(end_reason_.empty() ? "closed" : end_reason_);
  if (kept_upstream_) {
    // Set aside at the caller's Terminate; still clean only if nothing ended the session
    // differently since (a FATAL, a stop, a watched setting) and the reader stopped between
    // messages. Otherwise closed here.
    UpstreamConnection conn = std::move(upstream_);
    conn.stream = std::move(kept_upstream_);
    if (end_reason_ == "client_terminate" && pending_fatal_.empty() && !stopping_ && !cancel_in_flight_ &&
        backend_reader_.AtMessageBoundary() && tracker_.IdleAtReadyForQuery()) {
      co_await deps_.upstream_pool->Release(std::move(pool_key_), std::move(conn));
    } else {
      CloseUpstreamConnection(conn);
    }
  }
}

asio::awaitable<void> AgentSession::Fail(std::string sqlstate, std::string message) {
  auto* opened = stream_->outgoing().mutable_opened();
  opened->set_session_id(grant_.session_id());
  opened->set_ok(false);
  opened->set_sqlstate(sqlstate);
  opened->set_message(message);
  if (co_await stream_->Write()) co_await stream_->CloseWrites();
  // Drain until the gateway finishes the call so OnDone runs.
  for (;;) {
    const bool more = co_await stream_->Read();
    if (!more) break;
  }
  co_await stream_->Finished();
  stream_ = nullptr;
  SetState(State::kClosed);
  EmitEnded("upstream_login_failed");
}

void AgentSession::EmitEnded(const std::string& reason) {
  EmitRecords();
  // Statements sent whose result never came (the caller or the gateway went away, the
  // upstream connection closed): recorded as such, never dropped.
  if (!open_intents_.empty()) {
    std::vector<uint64_t> settled;
    for (OpenIntent& open : open_intents_) {
      MarkOutcomeUnknown(open.event, "pgward: the session ended before this statement's result came back; it may have run");
      settled.push_back(open.id);
      deps_.sink->EmitStatement(std::move(open.event), StatementLink{open.id, open.id});
    }
    open_intents_.clear();
    deps_.sink->IntentsSettled(id(), settled, 0);
  }
  pgward::v1::SessionEnded ended;
  ended.set_session_id(id());
  ended.set_ended_unix_ms(NowMicros() / 1000);
  ended.set_reason(reason);
  deps_.sink->EmitSessionEnded(std::move(ended));
  Log(LogLevel::kInfo, "session", id(), " ended: ", reason);
}

asio::awaitable<void> AgentSession::GatewayToUpstream() {
  FrontendHandler handler(*this);
  asio::steady_timer backlog_wait(strand_);
  for (;;) {
    // Backpressure: while the event queue is at its bound no new caller bytes are read, so no
    // new statements run (gRPC flow control then holds the caller). A stop or a FATAL ends the wait.
    for (bool logged = false; deps_.sink->Backlogged() && !stopping_ && pending_fatal_.empty();) {
      if (!logged) {
        logged = true;
        Log(LogLevel::kWarn, "session", id(), " waits: too many events await the gateway's acknowledgement");
      }
      backlog_wait.expires_after(std::chrono::milliseconds(50));
      co_await backlog_wait.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    if (!co_await stream_->Read()) {
      if (end_reason_.empty()) end_reason_ = "client_disconnect";
      break;
    }
    // Stop() sets stopping_ at once and cancels on the strand later: bytes read in between
    // (e.g. a statement held back by the backlog wait, which a stop ends) are not forwarded.
    if (stopping_) break;
    to_upstream_.clear();
    absl::Status status = frontend_reader_.Feed(stream_->incoming().data(), handler);
    if (!status.ok()) {
      Log(LogLevel::kWarn, "session", id(), " protocol violation from caller: ", status.message());
      end_reason_ = "protocol_violation";
      new_intents_.clear();
      break;
    }
    // Recorded before forwarded: an agent crash from here on still leaves the statements on record.
    if (!SpoolNewIntents()) break;
    if (!to_upstream_.empty()) {
      if (co_await upstream_.stream->TryWriteAll(asio::buffer(to_upstream_))) {
        if (end_reason_.empty()) end_reason_ = "upstream_closed";
        break;
      }
    }
    if (client_terminated_) {
      end_reason_ = "client_terminate";
      break;
    }
  }
  // The gateway side is gone (kill, caller vanished, stop): what runs upstream stops too.
  EndUpstreamNow();
}

// Upstream -> gateway. The reader appends checked bytes to `to_gateway_` while the previous
// frame's gRPC write is in flight; the writer sends whatever has accumulated as one frame. So
// a lone reply goes out at once, and a stream of rows (or several pipelined replies) goes out
// in few, large frames instead of one per socket read (Postgres flushes every 8 KiB).
asio::awaitable<void> AgentSession::UpstreamToGateway() {
  co_await (ReadUpstream() && WriteToGateway());
}

asio::awaitable<void> AgentSession::ReadUpstream() {
  BackendHandler handler(*this);
  for (;;) {
    // Backpressure: at most kMaxUnsentToGateway bytes wait for the gRPC write in flight; past
    // that the upstream socket is not read, so Postgres blocks on its send (bounded memory).
    while (to_gateway_.size() >= kMaxUnsentToGateway && !writer_done_) co_await gateway_space_->Wait();
    if (writer_done_) break;
    // Into this thread's scratch buffer, parsed before the next suspension (scratch_buffer.h).
    const asio::mutable_buffer scratch = net::ScratchBuffer();
    asio::error_code ec;
    net::MaybeTlsStream::Want want;
    const size_t n = upstream_.stream->ReadNow(scratch, ec, want);
    if (want != net::MaybeTlsStream::Want::kNothing) {
      ec = co_await upstream_.stream->WaitFor(want);
      if (!ec) continue;
    }
    if (ec) {
      if (end_reason_.empty()) end_reason_ = "upstream_closed";
      break;
    }
    absl::Status status =
        backend_reader_.Feed(std::string_view(static_cast<const char*>(scratch.data()), n), handler);
    EmitRecords();
    if (!status.ok()) {
      if (pending_fatal_.empty()) {
        // Fail closed: a relay that no longer understands the conversation stops relaying.
        Log(LogLevel::kError, "session", id(), " upstream protocol error: ", status.message());
        EndWithFatal(pgwire::sqlstate::kProtocolViolation,
                     "pgward: the database sent a message pgward cannot relay; the session was closed",
                     "upstream_protocol_error");
      }
      unsent_failed_ = true;
      break;
    }
    if (!to_gateway_.empty()) gateway_data_->Post(true);
    if (!pending_fatal_.empty()) break;  // EndWithFatal: what came before it is delivered
  }
  reader_done_ = true;
  gateway_data_->Post(true);
}

asio::awaitable<void> AgentSession::WriteToGateway() {
  for (;;) {
    while (to_gateway_.empty() && !reader_done_) co_await gateway_data_->Wait();
    // The reader's last bytes travel in the final frame below, with the end reason.
    if (reader_done_) break;
    auto& frame = stream_->outgoing();
    frame.mutable_data()->swap(to_gateway_);
    to_gateway_.clear();
    on_boundary_ = boundary_in_frame_ == frame.data().size();
    frame.set_message_boundary(on_boundary_);
    boundary_in_frame_ = on_boundary_ ? std::optional<size_t>(0) : std::nullopt;
    gateway_space_->Post(true);
    const bool written = co_await stream_->Write();
    // An idle session keeps no large buffer: a big result's frame is given back to the heap.
    std::string& sent = *stream_->outgoing().mutable_data();
    if (sent.capacity() > kKeepFrameCapacity) {
      std::string().swap(sent);
    } else {
      sent.clear();
    }
    if (!written) {
      if (end_reason_.empty()) end_reason_ = "client_disconnect";
      writer_done_ = true;
      gateway_space_->Post(true);
      CloseUpstream();  // ends the reader's wait for the server
      // Wait for the reader to stop touching `to_gateway_` before the final frame is built.
      while (!reader_done_) co_await gateway_data_->Wait();
      break;
    }
  }
  CloseUpstream();
  std::string data = std::move(to_gateway_);
  to_gateway_.clear();
  bool boundary = data.empty() ? on_boundary_ : boundary_in_frame_ == data.size();
  if (unsent_failed_) {
    // The messages before the one that failed were checked: send them, up to the last whole one.
    boundary = boundary_in_frame_.has_value();
    if (boundary) data.resize(*boundary_in_frame_);
  }
  if (writer_done_) data.clear();  // the gateway is gone: nothing more reaches it
  if (!pending_fatal_.empty() && boundary) {
    // The results before the FATAL go in a frame of their own, as they would have had the
    // FATAL come a moment later: a client that reads the result and the FATAL together and
    // then finds the connection closed may report only the close (psycopg does), not why.
    if (!data.empty()) {
      auto& results = stream_->outgoing();
      results.Clear();
      results.set_data(std::move(data));
      results.set_message_boundary(true);
      data.clear();
      if (!co_await stream_->Write() && end_reason_.empty()) end_reason_ = "client_disconnect";
    }
    data.append(pending_fatal_);
  }
  auto& last = stream_->outgoing();
  last.Clear();
  last.set_data(std::move(data));
  last.set_message_boundary(boundary);
  last.set_end_reason(end_reason_.empty() ? "upstream_closed" : end_reason_);
  if (co_await stream_->Write()) co_await stream_->CloseWrites();
}

void AgentSession::OnIntent(uint64_t intent_id, const inspect::AnalyzedStatementPtr& statement, bool extended,
                            int64_t sent_us) {
  pgward::v1::SpoolIntent& intent = new_intents_.emplace_back();
  intent.set_intent_id(intent_id);
  pgward::v1::StatementEvent& event = *intent.mutable_statement();
  event = NewEvent(statement.get(), extended, sent_us);
  event.set_decision("allowed");
}

bool AgentSession::SpoolNewIntents() {
  if (new_intents_.empty()) return true;
  absl::Status spooled = deps_.sink->SpoolIntents(id(), new_intents_);
  if (spooled.ok()) {
    for (auto& intent : new_intents_) open_intents_.push_back({intent.intent_id(), std::move(*intent.mutable_statement())});
  }
  new_intents_.clear();
  if (spooled.ok()) return true;
  // Fail closed: a statement that cannot be recorded does not run.
  EndWithFatal(kSpoolRefusedState,
               absl::StrCat("pgward: the agent cannot record statements (", spooled.message(),
                            "); nothing of this request was run and the session was closed"),
               "spool_failed");
  return false;
}

std::optional<PolicyDecision> AgentSession::SpoolRefusal() {
  if (!deps_.sink->SpoolRefuses()) return std::nullopt;
  return PolicyDecision{false, std::string(kSpoolRefusedState),
                        "pgward: the agent's audit spool is full (the gateway has not acknowledged its events) or "
                        "cannot be written (see the agent log), so no statement can be recorded; the statement was "
                        "not run. Retry once the gateway is reachable"};
}

PolicyDecision AgentSession::Decide(const inspect::AnalyzedStatement& statement) {
  if (std::optional<PolicyDecision> refusal = SpoolRefusal()) return *std::move(refusal);
  return CheckStatement(grant_.policy(), statement);
}

void AgentSession::EmitRecords() {
  std::vector<inspect::StatementRecord> records = tracker_.TakeRecords();
  const uint64_t settled_through = tracker_.SettledThrough();
  if (records.empty() && (open_intents_.empty() || open_intents_.front().id > settled_through)) return;
  // Each event says which intents are settled once it is spooled: all <= settled_through,
  // but not one whose event comes later in this batch (a crash between them must not lose it).
  std::vector<uint64_t> marks(records.size(), settled_through);
  uint64_t next_unwritten = UINT64_MAX;
  for (size_t i = records.size(); i-- > 0;) {
    if (next_unwritten != UINT64_MAX) marks[i] = std::min(settled_through, next_unwritten - 1);
    if (records[i].intent_id != 0) next_unwritten = std::min(next_unwritten, records[i].intent_id);
  }
  std::vector<uint64_t> settled;
  for (size_t i = 0; i < records.size(); ++i) {
    inspect::StatementRecord& record = records[i];
    pgward::v1::StatementEvent event = NewEvent(record.statement.get(), record.extended, record.time_unix_us);
    event.set_command_tag(record.command_tag);
    event.set_rows(record.rows);
    event.set_sqlstate(record.sqlstate);
    event.set_error(ErrorText(record.error, record.sqlstate, record.statement.get()));
    event.set_duration_us(record.duration_us);
    event.set_decision("allowed");
    event.set_outcome(record.sqlstate.empty() ? "ok" : "error");
    if (record.intent_id != 0) {
      for (auto it = open_intents_.begin(); it != open_intents_.end(); ++it) {
        if (it->id != record.intent_id) continue;
        open_intents_.erase(it);
        settled.push_back(record.intent_id);
        break;
      }
    }
    deps_.sink->EmitStatement(std::move(event), StatementLink{record.intent_id, marks[i]});
  }
  // Sent but settled without a record of their own (skipped after an error, say).
  bool without_event = false;
  while (!open_intents_.empty() && open_intents_.front().id <= settled_through) {
    settled.push_back(open_intents_.front().id);
    open_intents_.pop_front();
    without_event = true;
  }
  if (!settled.empty()) {
    deps_.sink->IntentsSettled(id(), settled, without_event && records.empty() ? settled_through : 0);
  }
}

pgward::v1::StatementEvent AgentSession::NewEvent(const inspect::AnalyzedStatement* statement, bool extended,
                                                  int64_t time_unix_us) const {
  pgward::v1::StatementEvent event;
  event.set_session_id(id());
  event.set_time_unix_us(time_unix_us);
  event.set_protocol(extended ? "extended" : "simple");
  if (statement != nullptr) {
    event.set_statement(StatementText(*statement));
    event.set_fingerprint(statement->fingerprint);
  }
  event.set_rule(grant_.policy().grant_id());
  return event;
}

void AgentSession::EmitDenied(const inspect::AnalyzedStatement& statement, bool extended,
                              const PolicyDecision& decision) {
  pgward::v1::StatementEvent event = NewEvent(&statement, extended, NowMicros());
  event.set_rows(-1);
  event.set_sqlstate(decision.sqlstate);
  const std::string error = ErrorText(decision.reason, decision.sqlstate, &statement);
  event.set_error(error);
  event.set_decision("denied");
  event.set_outcome("error");
  deps_.sink->EmitStatement(std::move(event));
  Log(LogLevel::kInfo, "session", id(), " denied a ", inspect::StatementClassName(statement.statement_class),
      " statement for ", grant_.principal(), ": ", error);
}

// Audit rows hold normalized text by default: literals may carry personal data or secrets.
std::string AgentSession::StatementText(const inspect::AnalyzedStatement& statement) const {
  if (grant_.policy().capture_literals()) return statement.text;
  if (statement.parsed) return statement.normalized;
  switch (statement.limit) {
    case inspect::AnalysisLimit::kTooLarge: return "<statement too large to analyze>";
    case inspect::AnalysisLimit::kTooComplex: return "<statement nested too deeply to analyze>";
    case inspect::AnalysisLimit::kNoResources: return "<statement not analyzed>";
    case inspect::AnalysisLimit::kNone: break;
  }
  return statement.text.empty() ? std::string() : "<statement that did not parse>";
}

// Server errors echo values ("invalid input syntax for type integer: \"ssn-...\""), and so do
// syntax errors in refusals: the same literal rule as StatementText.
std::string AgentSession::ErrorText(std::string_view message, std::string_view sqlstate,
                                    const inspect::AnalyzedStatement* statement) const {
  if (message.empty() || grant_.policy().capture_literals()) return std::string(message);
  return inspect::RedactErrorMessage(message, sqlstate, statement != nullptr ? statement->normalized : "");
}

void AgentSession::CloseUpstream() {
  if (!upstream_.stream || kept_upstream_) {
    if (upstream_.stream) upstream_.stream->Close();
    return;
  }
  if (UpstreamReusable()) {
    // Kept for the pool instead of closed. The relay's reader may be waiting on this socket:
    // cancelling wakes it (operation_aborted), and the closed stand-in left in its place makes
    // any later read fail at once, so it ends without ever reading the kept connection again.
    kept_upstream_ = std::move(upstream_.stream);
    asio::error_code ignored;
    kept_upstream_->socket().cancel(ignored);
    upstream_.stream = std::make_unique<net::MaybeTlsStream>(net::MaybeTlsStream::Socket(strand_), deps_.tls->Plain());
    upstream_.stream->Close();
    return;
  }
  if (client_terminated_) {
    // The caller's Terminate is not forwarded (statement_gate.cc): say goodbye to the server
    // ourselves, so it logs a clean end.
    std::string terminate;
    pgwire::AppendTerminate(terminate);
    asio::error_code ignored;
    upstream_.stream->WriteNow(asio::buffer(terminate), ignored);
  }
  upstream_.stream->Close();
}

bool AgentSession::UpstreamReusable() const {
  return !pool_key_.empty() && deps_.upstream_pool != nullptr && client_terminated_ &&
         end_reason_ == "client_terminate" && state_ == State::kRelaying && pending_fatal_.empty() && !stopping_ &&
         !cancel_in_flight_ && !check_owed_ && !discard_until_sync_ && refusal_.empty() &&
         backend_reader_.AtMessageBoundary() && frontend_reader_.AtMessageBoundary() &&
         tracker_.IdleAtReadyForQuery();
}

void AgentSession::Cancel() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->state_ == State::kRelaying) self->StartUpstreamCancel();
  });
}

void AgentSession::StartUpstreamCancel() {
  // One CancelRequest in flight per session. A cancel arriving meanwhile is merged into it:
  // the server cancels whatever runs when the request lands, so a second request adds nothing
  // but another connection.
  if (cancel_in_flight_) {
    Log(LogLevel::kDebug, "session", id(), " cancel request merged into the one in flight");
    return;
  }
  cancel_in_flight_ = true;
  asio::co_spawn(
      strand_,
      [self = shared_from_this()]() -> asio::awaitable<void> {
        absl::Status status = co_await SendUpstreamCancel(self->grant_.target(), self->upstream_.backend_pid,
                                                          self->upstream_.backend_key);
        self->cancel_in_flight_ = false;
        Log(LogLevel::kInfo, "session", self->id(), " cancel request sent upstream: ",
            status.ok() ? "ok" : std::string(status.message()));
      },
      asio::detached);
}

void AgentSession::EndUpstreamNow() {
  // A backend busy in a statement does not notice its client's socket close until it next
  // writes (pg_sleep(30) would run on, holding its locks): cancel the statement, then close.
  // The cancel and the close race harmlessly: either way the backend ends once interrupted.
  if (state_ == State::kRelaying && tracker_.PendingOperations() > 0) StartUpstreamCancel();
  CloseUpstream();
}

void AgentSession::EndWithFatal(std::string_view sqlstate, std::string_view message, std::string_view end_reason) {
  if (!pending_fatal_.empty()) return;
  pgwire::AppendErrorResponse(pending_fatal_, "FATAL", sqlstate, message);
  if (end_reason_.empty()) end_reason_ = std::string(end_reason);
  Log(LogLevel::kWarn, "session", id(), " ending (", end_reason, ") for ", grant_.principal(), ": ", message);
  // Stops UpstreamToGateway: at once if it is waiting for the server, else after the bytes it is
  // handling now (the backend handler drops everything after this point).
  CloseUpstream();
}

absl::Status AgentSession::CheckCopyResponse(inspect::StatementClass want, std::string_view message_name) {
  inspect::AnalyzedStatementPtr running = tracker_.RunningStatement();
  if (running != nullptr && running->statement_class == want) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("upstream sent ", AbslView(message_name),
                                                    " for a statement that is not ",
                                                    want == inspect::StatementClass::kCopyIn ? "COPY FROM STDIN"
                                                                                            : "COPY TO STDOUT"));
}

void AgentSession::UpdatePolicy(pgward::v1::Policy policy) {
  asio::post(strand_, [self = shared_from_this(), policy = std::move(policy)]() mutable {
    const bool was_read_only = self->grant_.policy().mode() == pgward::v1::MODE_READ_ONLY;
    const bool read_only = policy.mode() == pgward::v1::MODE_READ_ONLY;
    *self->grant_.mutable_policy() = std::move(policy);
    const pgward::v1::Policy& now = self->grant_.policy();
    self->check_identity_ = AllowsClass(now, inspect::StatementClass::kProcedure);
    self->check_after_copy_ = AllowsClass(now, inspect::StatementClass::kCopyIn);
    if (read_only != was_read_only) self->read_only_owed_ = true;
    // The pool keys connections by the policy they were made for; this one's settings may no
    // longer match either, so it is closed at the end rather than kept.
    self->pool_key_.clear();
    Log(LogLevel::kInfo, "session", self->id(), " policy changed by the gateway for ", self->grant_.principal(),
        ": mode ", pgward::v1::Mode_Name(now.mode()), " (grant ", now.grant_id(), ")");
  });
}

void AgentSession::Stop(std::string reason) {
  stopping_ = true;
  asio::post(strand_, [self = shared_from_this(), reason = std::move(reason)] {
    if (self->end_reason_.empty()) self->end_reason_ = reason;
    if (self->stream_signals_) self->stream_signals_->Cancel();
    self->EndUpstreamNow();
  });
}

}  // namespace pgward::agent

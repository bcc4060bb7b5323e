#include "gateway/relay/frontend_connection.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <cstring>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/net/scratch_buffer.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/protocol.h"
#include "common/pgwire/sqlstate.h"
#include "common/pgwire/startup_parameters.h"
#include "common/util/log.h"

namespace pgward::gateway {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);

const char* StateName(FrontendConnection::State state) {
  switch (state) {
    case FrontendConnection::State::kStartup: return "startup";
    case FrontendConnection::State::kAwaitingPassword: return "awaiting_password";
    case FrontendConnection::State::kAuthorizing: return "authorizing";
    case FrontendConnection::State::kRelaying: return "relaying";
    case FrontendConnection::State::kClosed: return "closed";
  }
  return "?";
}

// Maps broker/identity errors to the contract's SQLSTATEs (ARCHITECTURE.md section 4).
std::string_view SqlStateFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound: return pgwire::sqlstate::kInvalidCatalogName;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated: return pgwire::sqlstate::kInvalidAuthorization;
    case absl::StatusCode::kResourceExhausted: return pgwire::sqlstate::kTooManyConnections;
    default: return pgwire::sqlstate::kConnectionFailure;
  }
}

}  // namespace

FrontendConnection::FrontendConnection(asio::ip::tcp::socket socket, FrontendDeps deps)
    : stream_(std::move(socket), *deps.tls), deps_(std::move(deps)) {
  asio::error_code ec;
  auto endpoint = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    client_addr_ = endpoint.address().to_string();
    loopback_ = endpoint.address().is_loopback();
  }
}

void FrontendConnection::SetState(State next) {
  if (static_cast<int>(next) < static_cast<int>(state_)) {
    Log(LogLevel::kError, "frontend", client_addr_, " refused state change ", StateName(state_), " -> ",
        StateName(next));
    return;
  }
  state_ = next;
}

asio::awaitable<void> FrontendConnection::SendError(std::string_view severity, std::string_view sqlstate,
                                                    std::string_view message) {
  std::string out;
  pgwire::AppendErrorResponse(out, severity, sqlstate, message);
  co_await stream_.TryWriteAll(asio::buffer(out));
}

asio::awaitable<void> FrontendConnection::Run() {
  auto self = shared_from_this();
  auto executor = co_await asio::this_coro::executor;
  // Bound the whole login: a caller that stalls mid-handshake is cut off (08P01).
  asio::steady_timer login_timer(executor, deps_.options.auth_timeout);
  login_timer_ = &login_timer;
  bool timed_out = false;
  login_timer.async_wait([this, &timed_out](const asio::error_code& ec) {
    // Once authenticated (kAuthorizing) the broker's timeout applies; a late expiry is moot.
    if (ec || (state_ != State::kStartup && state_ != State::kAwaitingPassword)) return;
    timed_out = true;
    {
      // Only reads are pending in these states, so this write cannot interleave with another;
      // one attempt, without waiting: the connection is being closed anyway.
      std::string out;
      pgwire::AppendErrorResponse(out, "FATAL", pgwire::sqlstate::kProtocolViolation,
                                  "pgward: login took too long; the connection was closed");
      asio::error_code ignored;
      stream_.WriteNow(asio::buffer(out), ignored);
    }
    stream_.Close();
  });
  absl::Status login;
  try {
    login = co_await Login();
  } catch (const std::system_error& e) {
    login = absl::AbortedError(e.code().message());
  }
  login_timer.cancel();
  login_timer_ = nullptr;
  if (timed_out) {
    Log(LogLevel::kInfo, "frontend", client_addr_, " login timed out in state ", StateName(state_));
  }
  // A session that opened is always relayed (and so cleaned up), even if the last login write
  // failed: the relay notices the closed socket at once.
  if (!session_) {
    stream_.Close();
    SetState(State::kClosed);
    co_return;
  }

  SetState(State::kRelaying);
  // The session ends with the token (57P01): a revoked or expired identity keeps no access.
  asio::steady_timer expiry(executor);
  if (deadline_unix_ > 0) {
    expiry.expires_at(std::chrono::steady_clock::now() +
                      std::chrono::seconds(std::max<int64_t>(0, deadline_unix_ - std::time(nullptr))));
    expiry.async_wait([session = session_](const asio::error_code& ec) {
      if (!ec) {
        session->Kill("token_expired",
                      "pgward: the session ended because its access token expired; reconnect with a fresh token");
      }
    });
  }
  co_await Relay();
  expiry.cancel();
  SetState(State::kClosed);
}

void FrontendConnection::FinishStream() {
  if (stream_finished_) return;
  stream_finished_ = true;
  session_->MarkFinished();
  session_->stream->FinishOk();
}

asio::awaitable<void> FrontendConnection::Relay() {
  co_await (CallerToAgent() && AgentToCaller());
  FinishStream();
  // Both loops are over and the stream is finished: nothing here refers into it any more, and
  // it deletes itself once gRPC has completed what is in flight.
  session_->stream->Release();
  session_->stream = nullptr;
  auto [kill_reason, kill_message] = session_->KillReason();
  if (!kill_reason.empty()) end_reason_ = kill_reason;
  if (end_reason_.empty()) end_reason_ = "closed";
  co_await deps_.broker->Close(*session_, end_reason_);
  Log(LogLevel::kInfo, "frontend", client_addr_, " session ", session_->session_id, " ended: ", end_reason_);
}

asio::awaitable<void> FrontendConnection::CallerToAgent() {
  for (;;) {
    // Into this thread's scratch buffer, copied into the frame before the next suspension.
    const asio::mutable_buffer scratch = net::ScratchBuffer();
    asio::error_code ec;
    net::MaybeTlsStream::Want want;
    const size_t n = stream_.ReadNow(scratch, ec, want);
    if (want != net::MaybeTlsStream::Want::kNothing) {
      if (co_await stream_.WaitFor(want)) break;
      continue;
    }
    if (ec) break;
    if (stream_finished_) break;
    session_->stream->outgoing().set_data(static_cast<const char*>(scratch.data()), n);
    session_->stream->StartWriting();
    if (!co_await session_->bridge->write_done.Wait()) break;
  }
  if (!caller_gone_ && end_reason_.empty()) end_reason_ = "client_disconnect";
  caller_gone_ = true;
  // Finishing (not cancelling) lets gRPC deliver what was already written, e.g. a Terminate.
  FinishStream();
}

asio::awaitable<void> FrontendConnection::AgentToCaller() {
  for (;;) {
    // Once the stream is finished no operation may start: gRPC would complete it after
    // OnDone, on a reactor that no longer exists.
    if (stream_finished_) break;
    session_->stream->StartReading();
    if (!co_await session_->bridge->read_done.Wait()) break;
    const auto& frame = session_->stream->incoming();
    last_frame_on_boundary_ = frame.message_boundary();
    if (!frame.end_reason().empty()) agent_end_reason_ = frame.end_reason();
    if (frame.data().empty()) continue;
    if (co_await stream_.TryWriteAll(asio::buffer(frame.data()))) {
      caller_gone_ = true;
      break;
    }
  }
  if (!caller_gone_) {
    // The agent side ended first. Tell the caller why, but only between messages: a partial
    // DataRow followed by an ErrorResponse would be garbage to the client.
    // A clean end (the agent said why: the caller's Terminate, or Postgres closing after its
    // own FATAL) needs no word from us; a killed session or a vanished agent does.
    auto [kill_reason, kill_message] = session_->KillReason();
    if (last_frame_on_boundary_) {
      if (!kill_reason.empty()) {
        co_await SendError("FATAL", pgwire::sqlstate::kAdminShutdown, kill_message);
      } else if (agent_end_reason_.empty()) {
        co_await SendError("FATAL", pgwire::sqlstate::kConnectionFailure,
                           "pgward: the connection to the database agent was lost (agent disconnected); reconnect to retry");
      }
    }
    if (end_reason_.empty()) {
      end_reason_ = !kill_reason.empty() ? kill_reason : !agent_end_reason_.empty() ? agent_end_reason_ : "agent_lost";
    }
  }
  stream_.Close();
}


asio::awaitable<absl::StatusOr<pgwire::StartupPacket>> FrontendConnection::ReadStartupPacket() {
  unsigned char length_bytes[4];
  co_await stream_.ReadExactly(asio::buffer(length_bytes, 4));
  uint32_t length = (uint32_t(length_bytes[0]) << 24) | (uint32_t(length_bytes[1]) << 16) |
                    (uint32_t(length_bytes[2]) << 8) | uint32_t(length_bytes[3]);
  if (length < 8 || length > pgwire::kMaxStartupPacketLength) {
    co_return absl::InvalidArgumentError("invalid length of startup packet");
  }
  std::string packet(length, '\0');
  std::memcpy(packet.data(), length_bytes, 4);
  co_await stream_.ReadExactly(asio::buffer(packet.data() + 4, length - 4));
  size_t consumed = 0;
  auto decoded = pgwire::DecodeStartupPacket(packet, &consumed);
  if (!decoded.ok()) co_return decoded.status();
  if (!decoded->has_value()) co_return absl::InvalidArgumentError("incomplete startup packet");
  co_return std::move(**decoded);
}

asio::awaitable<absl::Status> FrontendConnection::Login() {
  pgwire::StartupPacket startup;
  for (;;) {
    auto packet = co_await ReadStartupPacket();
    if (!packet.ok()) {
      co_await SendError("FATAL", pgwire::sqlstate::kProtocolViolation, std::string(packet.status().message()));
      co_return packet.status();
    }
    switch (packet->kind) {
      case pgwire::StartupPacket::Kind::kSslRequest: {
        if (stream_.tls()) {
          co_await SendError("FATAL", pgwire::sqlstate::kProtocolViolation, "SSLRequest after TLS was established");
          co_return absl::InvalidArgumentError("duplicate SSLRequest");
        }
        // Bytes sent after the SSLRequest but before our answer could have been injected
        // (CVE-2021-23222). Check before answering: once the client has our 'S' it sends
        // its ClientHello at once, which is legitimate.
        if (stream_.BufferedPlaintextBytes() != 0) {
          co_await SendError("FATAL", pgwire::sqlstate::kProtocolViolation,
                             "received unencrypted data after SSL request");
          co_return absl::InvalidArgumentError("data before TLS handshake");
        }
        char yes = 'S';
        co_await stream_.WriteAll(asio::buffer(&yes, 1));
        if (auto ec = co_await stream_.Handshake(asio::ssl::stream_base::server)) {
          co_return absl::UnavailableError(absl::StrCat("TLS handshake failed: ", ec.message()));
        }
        continue;
      }
      case pgwire::StartupPacket::Kind::kGssEncRequest: {
        char no = 'N';
        co_await stream_.WriteAll(asio::buffer(&no, 1));
        continue;
      }
      case pgwire::StartupPacket::Kind::kCancelRequest:
        deps_.broker->Cancel(packet->cancel_pid, packet->cancel_key);
        co_return absl::CancelledError("cancel request handled");
      case pgwire::StartupPacket::Kind::kStartup:
        startup = std::move(*packet);
        break;
    }
    break;
  }

  if (!stream_.tls() && !(deps_.options.allow_insecure_loopback && loopback_)) {
    co_await SendError("FATAL", pgwire::sqlstate::kInvalidAuthorization,
                       "pgward requires TLS: connect with sslmode=require (the access token is a password)");
    co_return absl::PermissionDeniedError("plaintext refused");
  }

  SetState(State::kAwaitingPassword);
  std::string out;
  pgwire::AppendAuthenticationCleartextPassword(out);
  co_await stream_.WriteAll(asio::buffer(out));

  unsigned char header[5];
  co_await stream_.ReadExactly(asio::buffer(header, 5));
  uint32_t length = (uint32_t(header[1]) << 24) | (uint32_t(header[2]) << 16) | (uint32_t(header[3]) << 8) |
                    uint32_t(header[4]);
  if (header[0] != 'p' || length < 5 || length - 4 > deps_.options.max_token_bytes + 1) {
    std::string_view why = header[0] != 'p' ? "expected a password message" : "password message too large";
    co_await SendError("FATAL", header[0] != 'p' ? pgwire::sqlstate::kProtocolViolation
                                                 : pgwire::sqlstate::kInvalidAuthorization,
                       header[0] != 'p' ? why : "authentication failed: the access token is larger than 64 KiB");
    co_return absl::InvalidArgumentError(AbslView(why));
  }
  std::string body(length - 4, '\0');
  co_await stream_.ReadExactly(asio::buffer(body));
  auto password = pgwire::DecodePasswordMessage(body);
  if (!password.ok()) {
    co_await SendError("FATAL", pgwire::sqlstate::kProtocolViolation, "malformed password message");
    co_return password.status();
  }
  std::string token(absl::StripAsciiWhitespace(AbslView(*password)));
  const std::string connection(startup.Get("database").empty() ? startup.Get("user") : startup.Get("database"));

  // Verification can block on a JWKS fetch: run it off the I/O threads.
  auto verified = co_await asio::co_spawn(
      *deps_.blocking_pool,
      [this, &token]() -> asio::awaitable<absl::StatusOr<identity::VerifiedToken>> {
        co_return identity::Authenticate(*deps_.verifier, deps_.introspector, token);
      },
      asio::use_awaitable);
  if (!verified.ok()) {
    Log(LogLevel::kInfo, "frontend", client_addr_, " authentication failed: ", verified.status().message());
    // PermissionDenied: a genuine token whose principal or group name is unacceptable; its
    // reason is safe to show (token_verifier.h). Any other failure stays unexplained.
    // (Built before the co_await: GCC 12 destroys temporaries of a conditional operator inside
    // a co_await expression twice.)
    std::string message = "authentication failed: the access token was not accepted (present a valid, "
                          "unexpired token from a trusted issuer as the password)";
    if (absl::IsPermissionDenied(verified.status())) {
      message = absl::StrCat("authentication failed: ", verified.status().message(),
                             "; ask the identity provider's administrator for a plain name");
    }
    co_await SendError("FATAL", pgwire::sqlstate::kInvalidAuthorization, message);
    co_return verified.status();
  }

  // The caller is authenticated: from here the broker's own open timeout bounds the wait
  // for the agent, which may be longer than the login bound.
  SetState(State::kAuthorizing);
  login_timer_->cancel();
  CallerInfo caller;
  caller.client_addr = client_addr_;
  caller.caller_user = std::string(startup.Get("user"));
  caller.application_name = std::string(startup.Get("application_name"));
  if (deps_.introspector != nullptr) caller.access_token = token;
  // Only the shared allow-list reaches Postgres (the agent applies it again); anything that
  // could change identity, read-only mode or lexing is refused, naming the parameter.
  auto parameters = pgwire::FilterStartupParameters(startup.parameters);
  if (!parameters.ok()) {
    Log(LogLevel::kInfo, "frontend", client_addr_, " startup parameters refused: ", parameters.status().message());
    co_await SendError("FATAL", pgwire::sqlstate::kProtocolViolation,
                       absl::StrCat("pgward: ", parameters.status().message()));
    co_return parameters.status();
  }
  caller.startup_parameters = std::move(parameters->passed);
  auto session = co_await deps_.broker->Open(*verified, connection, caller);
  if (!session.ok()) {
    Log(LogLevel::kInfo, "frontend", client_addr_, " session for ", verified->principal, " on ", connection,
        " refused: ", session.status().message());
    co_await SendError("FATAL", SqlStateFor(session.status()), absl::StrCat("pgward: ", session.status().message()));
    co_return session.status();
  }
  session_ = std::move(*session);

  out.clear();
  pgwire::AppendAuthenticationOk(out);
  for (const auto& parameter : session_->opened.parameters()) {
    pgwire::AppendParameterStatus(out, parameter.name(), parameter.value());
  }
  pgwire::AppendBackendKeyData(out, session_->cancel_pid, session_->cancel_key);
  pgwire::AppendReadyForQuery(out, 'I');
  co_await stream_.WriteAll(asio::buffer(out));
  Log(LogLevel::kInfo, "frontend", client_addr_, " session ", session_->session_id, " opened for ",
      verified->principal, " on ", connection);
  deadline_unix_ = verified->expires_unix;
  co_return absl::OkStatus();
}

}  // namespace pgward::gateway

#include "agent/upstream/upstream_login.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include "absl/strings/str_cat.h"
#include "common/crypto/scram_client.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/protocol.h"
#include "common/util/log.h"

namespace pgward::agent {
namespace {

using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
constexpr auto kAsTuple = asio::experimental::as_tuple(use_awaitable);

// Login messages are small; anything bigger is a confused or hostile server.
constexpr uint32_t kMaxLoginMessage = 1 << 20;

struct RawMessage {
  char type = 0;
  std::string body;
};

asio::awaitable<absl::StatusOr<RawMessage>> ReadMessage(net::MaybeTlsStream& stream) {
  unsigned char header[5];
  co_await stream.ReadExactly(asio::buffer(header, 5));
  uint32_t length = (uint32_t(header[1]) << 24) | (uint32_t(header[2]) << 16) |
                    (uint32_t(header[3]) << 8) | uint32_t(header[4]);
  if (length < 4 || length > kMaxLoginMessage) {
    co_return absl::UnavailableError("upstream sent a malformed message during login");
  }
  RawMessage message;
  message.type = static_cast<char>(header[0]);
  message.body.resize(length - 4);
  if (!message.body.empty()) co_await stream.ReadExactly(asio::buffer(message.body));
  co_return message;
}

absl::Status UpstreamError(std::string_view body) {
  auto fields = pgwire::DecodeErrorOrNotice(body);
  if (!fields.ok()) return absl::UnavailableError("upstream login failed");
  return absl::UnavailableError(absl::StrCat("upstream login failed: ", AbslView(fields->message)));
}

// SSLRequest per sslmode (libpq semantics). Returns whether a TLS handshake is due.
asio::awaitable<absl::StatusOr<bool>> NegotiateTls(net::MaybeTlsStream& stream,
                                                   const std::string& mode) {
  if (mode == "disable") co_return false;
  std::string request;
  pgwire::AppendSslRequest(request);
  co_await stream.WriteAll(asio::buffer(request));
  char answer = 0;
  co_await stream.ReadExactly(asio::buffer(&answer, 1));
  if (answer == 'N') {
    if (mode == "prefer") co_return false;
    co_return absl::UnavailableError(absl::StrCat(
        "upstream server does not support TLS but the connection requires sslmode=", AbslView(mode)));
  }
  if (answer != 'S') co_return absl::UnavailableError("upstream answered SSLRequest with garbage");
  // CVE-2021-23222: bytes that arrive before the handshake could be injected by a MITM.
  if (stream.BufferedPlaintextBytes() != 0) {
    co_return absl::UnavailableError("upstream sent unencrypted data after accepting TLS");
  }
  co_return true;
}

// SCRAM's PBKDF2 on the crypto executor; the coroutine resumes on its own executor afterwards.
asio::awaitable<absl::Status> HandleServerFirstOffThread(crypto::ScramSha256Client& scram, std::string_view data,
                                                         const asio::any_io_executor& crypto_executor) {
  co_return co_await asio::co_spawn(
      crypto_executor,
      [&scram, data]() -> asio::awaitable<absl::Status> { co_return scram.HandleServerFirst(data); },
      use_awaitable);
}

// The authentication exchange (protocol section 55.2.1 "Start-up") up to AuthenticationOk.
asio::awaitable<absl::Status> Authenticate(net::MaybeTlsStream& stream, const UpstreamLoginRequest& request,
                                           UpstreamTransport transport) {
  const std::string& user = request.target->user();
  const std::string& password = request.password;
  std::string out;
  std::unique_ptr<crypto::ScramSha256Client> scram;
  for (;;) {
    auto message = co_await ReadMessage(stream);
    if (!message.ok()) co_return message.status();
    if (message->type == 'E') co_return UpstreamError(message->body);
    if (message->type == 'v') continue;  // NegotiateProtocolVersion: minor version downgrade
    if (message->type != 'R') {
      co_return absl::UnavailableError("upstream sent an unexpected message during login");
    }
    auto auth = pgwire::DecodeAuthentication(message->body);
    if (!auth.ok()) co_return absl::UnavailableError("upstream sent a malformed authentication request");
    out.clear();
    switch (auth->code) {
      case pgwire::kAuthOk:
        if (scram) co_return absl::UnavailableError("upstream skipped the SCRAM server signature");
        co_return absl::OkStatus();
      case pgwire::kAuthCleartextPassword: {
        // A server we cannot authenticate must not learn the password (libpq's require_auth).
        absl::Status allowed = request.policy->CheckPasswordRequest(PasswordRequest::kCleartext, transport);
        if (!allowed.ok()) co_return absl::UnavailableError(allowed.message());
        pgwire::AppendPasswordMessage(out, password);
        break;
      }
      case pgwire::kAuthMd5Password: {
        // md5 with a salt the server chose gives it a hash to attack offline.
        absl::Status allowed = request.policy->CheckPasswordRequest(PasswordRequest::kMd5, transport);
        if (!allowed.ok()) co_return absl::UnavailableError(allowed.message());
        if (auth->data.size() != 4) co_return absl::UnavailableError("upstream sent a bad md5 salt");
        pgwire::AppendPasswordMessage(out, crypto::PostgresMd5Password(user, password, auth->data));
        break;
      }
      case pgwire::kAuthSasl: {
        bool offered = false;
        for (auto mechanism : pgwire::SplitSaslMechanisms(auth->data)) {
          offered = offered || mechanism == "SCRAM-SHA-256";
        }
        if (!offered) co_return absl::UnavailableError("upstream offers no SASL mechanism pgward supports");
        scram = std::make_unique<crypto::ScramSha256Client>(password);
        pgwire::AppendSaslInitialResponse(out, "SCRAM-SHA-256", scram->ClientFirstMessage());
        break;
      }
      case pgwire::kAuthSaslContinue: {
        if (!scram) co_return absl::UnavailableError("upstream sent SASLContinue out of order");
        absl::Status status = co_await HandleServerFirstOffThread(*scram, auth->data, request.crypto_executor);
        if (!status.ok()) co_return absl::UnavailableError(absl::StrCat("upstream SCRAM exchange failed: ", status.message()));
        pgwire::AppendSaslResponse(out, scram->ClientFinalMessage());
        break;
      }
      case pgwire::kAuthSaslFinal: {
        if (!scram) co_return absl::UnavailableError("upstream sent SASLFinal out of order");
        absl::Status status = scram->VerifyServerFinal(auth->data);
        if (!status.ok()) co_return absl::UnavailableError(absl::StrCat("upstream SCRAM exchange failed: ", status.message()));
        scram.reset();
        continue;
      }
      default:
        co_return absl::UnavailableError(absl::StrCat(
            "upstream asks for an authentication method pgward does not support (code ",
            auth->code, "); use scram-sha-256, md5 or password in pg_hba.conf"));
    }
    co_await stream.WriteAll(asio::buffer(out));
  }
}

asio::awaitable<absl::StatusOr<UpstreamConnection>> DoLogin(const UpstreamLoginRequest& request,
                                                            TlsContexts& tls) {
  const pgward::v1::UpstreamTarget& t = *request.target;
  auto executor = co_await asio::this_coro::executor;
  const std::string mode = t.sslmode().empty() ? "prefer" : t.sslmode();
  const bool verify = mode == "verify-full";
  asio::ssl::context* context = &tls.Plain();
  if (mode != "disable") {
    auto ctx = tls.Get(verify, t.ca_file());
    if (!ctx.ok()) co_return ctx.status();
    context = *ctx;
  }

  asio::ip::tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(
      t.host(), std::to_string(t.port() == 0 ? 5432 : t.port()), kAsTuple);
  if (resolve_ec) {
    co_return absl::UnavailableError(absl::StrCat("cannot resolve upstream host ", t.host(), ": ",
                                                  resolve_ec.message()));
  }
  asio::ip::tcp::socket socket(executor);
  auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, kAsTuple);
  if (connect_ec) {
    co_return absl::UnavailableError(absl::StrCat("cannot connect to upstream ", t.host(), ":",
                                                  t.port(), ": ", connect_ec.message()));
  }
  socket.set_option(asio::ip::tcp::no_delay(true));

  UpstreamConnection conn;
  conn.stream = std::make_unique<net::MaybeTlsStream>(std::move(socket), *context);
  net::MaybeTlsStream& stream = *conn.stream;

  auto handshake_due = co_await NegotiateTls(stream, mode);
  if (!handshake_due.ok()) co_return handshake_due.status();
  if (*handshake_due) {
    stream.PrepareClientTls(t.host(), verify);
    if (auto ec = co_await stream.Handshake(asio::ssl::stream_base::client)) {
      co_return absl::UnavailableError(absl::StrCat("TLS handshake with upstream failed: ", ec.message()));
    }
  }

  std::vector<std::pair<std::string, std::string>> params = {{"user", t.user()},
                                                             {"database", t.database()}};
  params.insert(params.end(), request.startup_parameters.begin(), request.startup_parameters.end());
  std::string out;
  pgwire::AppendStartupMessage(out, params);
  co_await stream.WriteAll(asio::buffer(out));

  const UpstreamTransport transport = !stream.tls() ? UpstreamTransport::kPlaintext
                                     : verify      ? UpstreamTransport::kTlsVerified
                                                   : UpstreamTransport::kTlsUnverified;
  absl::Status auth = co_await Authenticate(stream, request, transport);
  if (!auth.ok()) co_return auth;

  // After AuthenticationOk: ParameterStatus*, BackendKeyData, then ReadyForQuery (55.2.1).
  for (;;) {
    auto message = co_await ReadMessage(stream);
    if (!message.ok()) co_return message.status();
    switch (message->type) {
      case 'S': {
        auto param = pgwire::DecodeParameterStatus(message->body);
        if (!param.ok()) co_return absl::UnavailableError("upstream sent a malformed ParameterStatus");
        conn.parameters.emplace_back(std::string(param->first), std::string(param->second));
        break;
      }
      case 'K': {
        auto key = pgwire::DecodeBackendKeyData(message->body);
        if (!key.ok()) co_return absl::UnavailableError("upstream sent a malformed BackendKeyData");
        conn.backend_pid = key->first;
        conn.backend_key = key->second;
        break;
      }
      case 'N':
        break;
      case 'E':
        co_return UpstreamError(message->body);
      case 'Z':
        co_return std::move(conn);
      default:
        co_return absl::UnavailableError("upstream sent an unexpected message after login");
    }
  }
}

}  // namespace

asio::awaitable<absl::StatusOr<UpstreamConnection>> LoginUpstream(UpstreamLoginRequest request,
                                                                  TlsContexts& tls) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, request.timeout);
  try {
    auto result = co_await (DoLogin(request, tls) || timer.async_wait(use_awaitable));
    if (result.index() == 1) {
      co_return absl::DeadlineExceededError("upstream login timed out");
    }
    co_return std::move(std::get<0>(result));
  } catch (const std::system_error& e) {
    co_return absl::UnavailableError(absl::StrCat("upstream connection failed: ", e.code().message()));
  }
}

std::string EscapeStartupOption(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      escaped.push_back('\\');
    }
    escaped.push_back(c);
  }
  return escaped;
}

namespace {

asio::awaitable<absl::Status> DoSendCancel(const pgward::v1::UpstreamTarget& target, int32_t pid, uint32_t key) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(
      target.host(), std::to_string(target.port() == 0 ? kDefaultPostgresPort : target.port()), kAsTuple);
  if (resolve_ec) co_return absl::UnavailableError(resolve_ec.message());
  asio::ip::tcp::socket socket(executor);
  auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, kAsTuple);
  if (connect_ec) co_return absl::UnavailableError(connect_ec.message());
  std::string out;
  pgwire::AppendCancelRequest(out, pid, key);
  auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(out), kAsTuple);
  if (write_ec) co_return absl::UnavailableError(write_ec.message());
  // The server closes the connection after processing the request; wait for that so the
  // cancel is delivered before we report success.
  char ignored;
  co_await socket.async_read_some(asio::buffer(&ignored, 1), kAsTuple);
  co_return absl::OkStatus();
}

}  // namespace

asio::awaitable<absl::Status> SendUpstreamCancel(const pgward::v1::UpstreamTarget& target,
                                                 int32_t pid, uint32_t key, std::chrono::milliseconds deadline) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, deadline);
  // Whichever finishes first cancels the other; the losing branch's socket closes as its
  // frame unwinds, so a server that never answers holds nothing past the deadline.
  auto result = co_await (DoSendCancel(target, pid, key) || timer.async_wait(kAsTuple));
  if (result.index() == 1) {
    co_return absl::DeadlineExceededError(
        absl::StrCat("the database did not close the cancel connection within ", deadline.count(), " ms"));
  }
  co_return std::get<0>(std::move(result));
}

}  // namespace pgward::agent

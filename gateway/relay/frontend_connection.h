// One caller connection on the gateway's Postgres endpoint: TLS, token login, then the relay.
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "common/net/maybe_tls_stream.h"
#include "common/pgwire/startup.h"
#include "gateway/broker/session_broker.h"
#include "gateway/identity/introspector.h"
#include "gateway/identity/token_verifier.h"

namespace pgward::gateway {

struct FrontendOptions {
  bool allow_insecure_loopback = false;
  std::chrono::milliseconds auth_timeout{10000};
  size_t max_token_bytes = 64 * 1024;
};

struct FrontendDeps {
  asio::ssl::context* tls = nullptr;
  identity::TokenVerifier* verifier = nullptr;
  // With introspection (--oidc-introspection): logins are checked with the IdP too, and the
  // session keeps its token for the periodic re-check. Null: JWT verification alone.
  identity::Introspector* introspector = nullptr;
  SessionBroker* broker = nullptr;
  asio::thread_pool* blocking_pool = nullptr;  // token verification may fetch JWKS
  FrontendOptions options;
};

class FrontendConnection : public std::enable_shared_from_this<FrontendConnection> {
 public:
  // Every change goes through SetState(), which refuses to go backwards.
  enum class State {
    kStartup,           // reading the first packet (SSLRequest, GSSENCRequest, Startup, Cancel)
    kAwaitingPassword,  // asked for a cleartext password: the bearer token
    kAuthorizing,       // token verified; grant check and hand-off to the agent
    kRelaying,          // bytes flow between caller and agent
    kClosed,
  };

  FrontendConnection(asio::ip::tcp::socket socket, FrontendDeps deps);
  asio::awaitable<void> Run();

 private:
  asio::awaitable<absl::Status> Login();
  asio::awaitable<absl::StatusOr<pgwire::StartupPacket>> ReadStartupPacket();
  asio::awaitable<void> Relay();
  asio::awaitable<void> CallerToAgent();
  asio::awaitable<void> AgentToCaller();
  asio::awaitable<void> SendError(std::string_view severity, std::string_view sqlstate, std::string_view message);
  void FinishStream();
  void SetState(State next);

  net::MaybeTlsStream stream_;
  FrontendDeps deps_;
  State state_ = State::kStartup;
  std::string client_addr_;
  bool loopback_ = false;
  std::shared_ptr<LiveSession> session_;
  bool stream_finished_ = false;
  bool caller_gone_ = false;
  bool last_frame_on_boundary_ = true;
  std::string end_reason_;
  std::string agent_end_reason_;  // from the agent's last frame, if it sent one
  int64_t deadline_unix_ = 0;  // the token's exp
  asio::steady_timer* login_timer_ = nullptr;  // bounds startup + authentication only
};

}  // namespace pgward::gateway

#include "gateway/broker/agent_service.h"

#include "absl/strings/match.h"
#include "common/crypto/token_hash.h"
#include "common/net/grpc_server_calls.h"
#include "common/util/log.h"
#include "gateway/broker/control_stream.h"
#include "gateway/relay/session_stream.h"

namespace pgward::gateway {
namespace {

std::string Metadata(const grpc::ServerContext& context, const char* key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

std::string PeerAddress(std::string peer) {
  const size_t colon = peer.rfind(':');
  const size_t bracket = peer.rfind(']');
  // "ipv4:a.b.c.d:port", "ipv6:[addr]:port": the port follows the last colon, outside brackets.
  if (colon != std::string::npos && colon > peer.find(':') && (bracket == std::string::npos || colon > bracket)) {
    peer.resize(colon);
  }
  return peer;
}

absl::StatusOr<AuthenticatedAgent> AgentServiceImpl::Authenticate(const grpc::ServerContext& context) {
  std::string name = Metadata(context, "x-pgward-agent");
  std::string authorization = Metadata(context, "authorization");
  if (name.empty() || !absl::StartsWith(authorization, "Bearer ")) {
    return absl::UnauthenticatedError("agent name and bearer token required");
  }
  // Agent names are at most 63 bytes (admin_validation.h): a longer one is no agent of ours.
  if (name.size() > 63) return absl::UnauthenticatedError("unknown agent or wrong token");
  const std::string token = authorization.substr(7);
  absl::Status status = store_.AuthenticateAgent(name, token);
  if (!status.ok()) {
    Log(LogLevel::kWarn, "agents", "refused agent \"", name, "\" from ", context.peer(), ": ", status.message());
    return absl::UnauthenticatedError("unknown agent or wrong token");
  }
  return AuthenticatedAgent{std::move(name), crypto::HashToken(token)};
}

void AgentServiceImpl::AuthenticateOffThread(const grpc::ServerContext& context,
                                             absl::AnyInvocable<void(absl::StatusOr<AuthenticatedAgent>)> done) {
  std::string peer = PeerAddress(context.peer());
  const AuthenticationGate::Entry entry = waiting_.TryEnter(peer);
  if (entry != AuthenticationGate::Entry::kAdmitted) {
    // Logged once per burst, not per stream: the refusals are what a flood is made of.
    if (entry == AuthenticationGate::Entry::kFirstRefusal) {
      Log(LogLevel::kWarn, "agents", "refusing agent streams from ", peer, ": too many authentications waiting (",
          kMaxPendingPerPeer, " per peer, ", kMaxPending, " in all)");
    }
    done(absl::ResourceExhaustedError("too many agent streams waiting to authenticate; retry"));
    return;
  }
  asio::post(store_executor_, [this, &context, peer = std::move(peer), done = std::move(done)]() mutable {
    absl::StatusOr<AuthenticatedAgent> agent = Authenticate(context);
    waiting_.Leave(peer);
    done(std::move(agent));
  });
}

void AgentServiceImpl::Start(net::GrpcDriver& driver) {
  using pgward::v1::AgentMessage;
  using pgward::v1::GatewayMessage;
  using pgward::v1::SessionFrame;
  net::BidiAcceptor<AgentMessage, GatewayMessage>::Start(
      [this](grpc::ServerContext* context, grpc::ServerAsyncReaderWriter<GatewayMessage, AgentMessage>* stream,
             grpc::ServerCompletionQueue* queue,
             void* tag) { service_.RequestControl(context, stream, queue, queue, tag); },
      driver,
      [this](std::unique_ptr<ControlStream::Call> call) {
        new ControlStream(std::move(call), ControlStream::Deps{this, &registry_, &audit_, &broker_, &store_,
                                                               heartbeat_interval_ms_, store_executor_});
      });
  net::BidiAcceptor<SessionFrame, SessionFrame>::Start(
      [this](grpc::ServerContext* context, grpc::ServerAsyncReaderWriter<SessionFrame, SessionFrame>* stream,
             grpc::ServerCompletionQueue* queue,
             void* tag) { service_.RequestSession(context, stream, queue, queue, tag); },
      driver,
      [this](std::unique_ptr<SessionStream::Call> call) {
        new SessionStream(std::move(call), *this, broker_);
      });
}

}  // namespace pgward::gateway

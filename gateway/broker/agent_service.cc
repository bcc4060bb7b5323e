#include "gateway/broker/agent_service.h"

#include "absl/strings/match.h"
#include "common/crypto/token_hash.h"
#include "common/util/log.h"
#include "gateway/broker/control_stream.h"
#include "gateway/relay/session_stream.h"

namespace pgward::gateway {
namespace {

// Ends a stream at once with an error status; deletes itself when gRPC is done with it.
template <typename Request, typename Response>
class RejectedStream : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RejectedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

std::string Metadata(grpc::CallbackServerContext* context, const char* key) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

absl::StatusOr<AgentServiceImpl::AuthenticatedAgent> AgentServiceImpl::Authenticate(
    grpc::CallbackServerContext* context) {
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
    Log(LogLevel::kWarn, "agents", "refused agent \"", name, "\" from ", context->peer(), ": ", status.message());
    return absl::UnauthenticatedError("unknown agent or wrong token");
  }
  return AuthenticatedAgent{std::move(name), crypto::HashToken(token)};
}

grpc::ServerBidiReactor<pgward::v1::AgentMessage, pgward::v1::GatewayMessage>* AgentServiceImpl::Control(
    grpc::CallbackServerContext* context) {
  auto agent = Authenticate(context);
  if (!agent.ok()) {
    return new RejectedStream<pgward::v1::AgentMessage, pgward::v1::GatewayMessage>(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(agent.status().message())));
  }
  return new ControlStream(context, agent->name, agent->credential, context->peer(), registry_, audit_, store_,
                           heartbeat_interval_ms_);
}

grpc::ServerBidiReactor<pgward::v1::SessionFrame, pgward::v1::SessionFrame>* AgentServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  auto agent = Authenticate(context);
  if (!agent.ok()) {
    return new RejectedStream<pgward::v1::SessionFrame, pgward::v1::SessionFrame>(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(agent.status().message())));
  }
  return new SessionStream(context, broker_, agent->name);
}

}  // namespace pgward::gateway

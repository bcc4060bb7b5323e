// AgentService: authenticates agents and creates a reactor per Control or Session stream.
#pragma once

#include <grpcpp/grpcpp.h>

#include "gateway/broker/agent_registry.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/broker/session_broker.h"
#include "gateway/store/store.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

class AgentServiceImpl : public pgward::v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(store::Store& store, AgentRegistry& registry, AuditWriter& audit, SessionBroker& broker,
                   uint32_t heartbeat_interval_ms)
      : store_(store), registry_(registry), audit_(audit), broker_(broker),
        heartbeat_interval_ms_(heartbeat_interval_ms) {}

  grpc::ServerBidiReactor<pgward::v1::AgentMessage, pgward::v1::GatewayMessage>* Control(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<pgward::v1::SessionFrame, pgward::v1::SessionFrame>* Session(
      grpc::CallbackServerContext* context) override;

 private:
  struct AuthenticatedAgent {
    std::string name;
    std::string credential;  // crypto::HashToken of the token it presented
  };
  // The agent named by x-pgward-agent once its bearer token checks out. Every stream, Control
  // and Session alike, is authenticated when it opens; a deleted agent's open streams are
  // ended by SessionBroker::AgentDeleted.
  absl::StatusOr<AuthenticatedAgent> Authenticate(grpc::CallbackServerContext* context);

  store::Store& store_;
  AgentRegistry& registry_;
  AuditWriter& audit_;
  SessionBroker& broker_;
  const uint32_t heartbeat_interval_ms_;
};

}  // namespace pgward::gateway

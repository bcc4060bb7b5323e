// AgentService: accepts agents' Control and Session streams on the gateway's gRPC driver and
// authenticates each before it reads a message.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>

#include "absl/status/statusor.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/broker/session_broker.h"
#include "gateway/store/store.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

// The agent named by a stream's x-pgward-agent metadata, once its bearer token checked out.
struct AuthenticatedAgent {
  std::string name;
  std::string credential;  // crypto::HashToken of the token it presented
};

class AgentServiceImpl {
 public:
  // `store_executor` runs everything that touches the store (authentication, heartbeats):
  // never the gRPC driver's thread, which every session's relay work shares.
  AgentServiceImpl(store::Store& store, AgentRegistry& registry, AuditWriter& audit, SessionBroker& broker,
                   uint32_t heartbeat_interval_ms, asio::any_io_executor store_executor)
      : store_(store), registry_(registry), audit_(audit), broker_(broker),
        heartbeat_interval_ms_(heartbeat_interval_ms), store_executor_(std::move(store_executor)) {}

  // For ServerBuilder::RegisterService.
  grpc::Service* service() { return &service_; }
  // Starts accepting Control and Session streams; after the server started.
  void Start(grpc::ServerCompletionQueue* cq);

  // Every stream, Control and Session alike, is authenticated when it opens; a deleted agent's
  // open streams are ended by SessionBroker::AgentDeleted. Blocking (store): on store_executor.
  absl::StatusOr<AuthenticatedAgent> Authenticate(const grpc::ServerContext& context);

 private:
  pgward::v1::AgentService::AsyncService service_;
  store::Store& store_;
  AgentRegistry& registry_;
  AuditWriter& audit_;
  SessionBroker& broker_;
  const uint32_t heartbeat_interval_ms_;
  asio::any_io_executor store_executor_;
};

}  // namespace pgward::gateway

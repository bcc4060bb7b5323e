// AgentService: accepts agents' Control and Session streams on the gateway's gRPC driver and
// authenticates each before it reads a message.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/net/grpc_driver.h"
#include "gateway/broker/authentication_gate.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/broker/session_broker.h"
#include "gateway/store/store.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

// The agent named by a stream's x-pgward-agent metadata, once its bearer token checked out.
// context.peer() without the port: "ipv4:10.0.0.5:51234" -> "ipv4:10.0.0.5",
// "ipv6:[::1]:51234" -> "ipv6:[::1]"; a peer without a port is kept whole.
std::string PeerAddress(std::string peer);

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
  void Start(net::GrpcDriver& driver);

  // Every stream, Control and Session alike, is authenticated when it opens; a deleted agent's
  // open streams are ended by SessionBroker::AgentDeleted. Blocking (store): on store_executor.
  absl::StatusOr<AuthenticatedAgent> Authenticate(const grpc::ServerContext& context);

  // Authenticate on the store executor, then `done` with the result, there. Anyone who reaches
  // the gRPC port can open streams with made-up tokens, and each costs a store look-up on the
  // executor that callers' logins also wait for: at most kMaxPendingPerPeer look-ups per peer
  // address, and kMaxPending in all, wait at once (AuthenticationGate). A stream over either
  // bound is refused at once (RESOURCE_EXHAUSTED, `done` runs inline) without touching the store.
  void AuthenticateOffThread(const grpc::ServerContext& context,
                             absl::AnyInvocable<void(absl::StatusOr<AuthenticatedAgent>)> done);
  static constexpr int kMaxPendingPerPeer = 256;  // an agent opening sessions in a burst stays under it
  static constexpr int kMaxPending = 1024;

 private:
  pgward::v1::AgentService::AsyncService service_;
  store::Store& store_;
  AgentRegistry& registry_;
  AuditWriter& audit_;
  SessionBroker& broker_;
  const uint32_t heartbeat_interval_ms_;
  asio::any_io_executor store_executor_;
  AuthenticationGate waiting_{kMaxPendingPerPeer, kMaxPending};
};

}  // namespace pgward::gateway

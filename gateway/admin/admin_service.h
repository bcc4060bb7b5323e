// AdminService (proto/pgward/v1/admin.proto): agents, connections, grants, sessions and audit
// for pgwardctl and automation. Authorizes every call, validates input, and never returns a
// secret except an agent's token once, at creation.
#pragma once

#include <asio.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/crypto/secret_box.h"
#include "common/net/grpc_driver.h"
#include "gateway/admin/admin_interfaces.h"
#include "gateway/store/store.h"
#include "pgward/v1/admin.grpc.pb.h"

namespace pgward::admin {

// Served on the gateway's gRPC driver (common/net/grpc_server_calls.h): each call's handler
// runs on the executor given to Start, never on the driver's thread, because handlers use the
// store and may verify an OIDC token (a JWKS fetch).
class AdminServiceImpl {
 public:
  // Responses that list rows stay under this many bytes: below gRPC's default 4 MiB receive
  // limit, so pgwardctl and any other client can always read them. A response cut short says
  // so (`truncated`).
  static constexpr size_t kMaxListResponseBytes = size_t{3} << 20;

  // All references must outlive the service. `secrets` seals gateway: passwords.
  // `trusted_issuers` are the gateway's --oidc-issuer values (grants are issuer-scoped).
  AdminServiceImpl(store::Store& store, const crypto::SecretBox& secrets, AdminAuthorizer& authorizer,
                   LiveDirectory& live, std::vector<std::string> trusted_issuers)
      : store_(store), secrets_(secrets), authorizer_(authorizer), live_(live),
        trusted_issuers_(std::move(trusted_issuers)) {}

  // For ServerBuilder::RegisterService.
  grpc::Service* service() { return &service_; }
  // Starts serving every method; after the server started. Keep `executor` running until
  // grpc::Server::Shutdown returned.
  void Start(net::GrpcDriver& driver, const asio::any_io_executor& executor);

  // One method per rpc of admin.proto, served by Start. They block on the store.
  grpc::Status CreateAgent(grpc::ServerContext* ctx, const pgward::v1::CreateAgentRequest* req,
                                        pgward::v1::CreateAgentResponse* resp);
  grpc::Status ListAgents(grpc::ServerContext* ctx, const pgward::v1::ListAgentsRequest* req,
                                       pgward::v1::ListAgentsResponse* resp);
  grpc::Status DeleteAgent(grpc::ServerContext* ctx, const pgward::v1::DeleteAgentRequest* req,
                                        pgward::v1::DeleteAgentResponse* resp);

  grpc::Status RotateAgent(grpc::ServerContext* ctx, const pgward::v1::RotateAgentRequest* req,
                           pgward::v1::RotateAgentResponse* resp);
  grpc::Status CreateConnection(grpc::ServerContext* ctx,
                                             const pgward::v1::CreateConnectionRequest* req,
                                             pgward::v1::Connection* resp);
  grpc::Status UpdateConnection(grpc::ServerContext* ctx,
                                             const pgward::v1::UpdateConnectionRequest* req,
                                             pgward::v1::Connection* resp);
  grpc::Status ListConnections(grpc::ServerContext* ctx,
                                            const pgward::v1::ListConnectionsRequest* req,
                                            pgward::v1::ListConnectionsResponse* resp);
  grpc::Status DeleteConnection(grpc::ServerContext* ctx,
                                             const pgward::v1::DeleteConnectionRequest* req,
                                             pgward::v1::DeleteConnectionResponse* resp);

  grpc::Status CreateGrant(grpc::ServerContext* ctx, const pgward::v1::CreateGrantRequest* req,
                                        pgward::v1::Grant* resp);
  grpc::Status UpdateGrant(grpc::ServerContext* ctx, const pgward::v1::UpdateGrantRequest* req,
                           pgward::v1::Grant* resp);
  grpc::Status ListGrants(grpc::ServerContext* ctx, const pgward::v1::ListGrantsRequest* req,
                                       pgward::v1::ListGrantsResponse* resp);
  grpc::Status DeleteGrant(grpc::ServerContext* ctx, const pgward::v1::DeleteGrantRequest* req,
                                        pgward::v1::DeleteGrantResponse* resp);

  grpc::Status RevokePrincipal(grpc::ServerContext* ctx, const pgward::v1::RevokePrincipalRequest* req,
                               pgward::v1::Revocation* resp);
  grpc::Status RestorePrincipal(grpc::ServerContext* ctx, const pgward::v1::RestorePrincipalRequest* req,
                                pgward::v1::RestorePrincipalResponse* resp);
  grpc::Status ListRevocations(grpc::ServerContext* ctx, const pgward::v1::ListRevocationsRequest* req,
                               pgward::v1::ListRevocationsResponse* resp);

  grpc::Status ListSessions(grpc::ServerContext* ctx, const pgward::v1::ListSessionsRequest* req,
                                         pgward::v1::ListSessionsResponse* resp);
  grpc::Status KillSession(grpc::ServerContext* ctx, const pgward::v1::KillSessionRequest* req,
                                        pgward::v1::KillSessionResponse* resp);

  grpc::Status ListAudit(grpc::ServerContext* ctx, const pgward::v1::ListAuditRequest* req,
                                      pgward::v1::ListAuditResponse* resp);

 private:
  // Authorizes the call, runs `handler(admin_identity)` and returns its status for the wire.
  template <typename Handler>
  grpc::Status Serve(grpc::ServerContext* ctx, const char* method, Handler&& handler);
  absl::StatusOr<std::string> AuthorizeCall(const grpc::ServerContext& ctx);

  absl::Status DoCreateConnection(const std::string& admin, const pgward::v1::CreateConnectionRequest& req,
                                  pgward::v1::Connection& resp);
  absl::Status DoUpdateConnection(const std::string& admin, const pgward::v1::UpdateConnectionRequest& req,
                                  pgward::v1::Connection& resp);
  absl::Status DoDeleteConnection(const std::string& admin, const std::string& name);

  pgward::v1::AdminService::AsyncService service_;
  store::Store& store_;
  const crypto::SecretBox& secrets_;
  AdminAuthorizer& authorizer_;
  LiveDirectory& live_;
  const std::vector<std::string> trusted_issuers_;
};

}  // namespace pgward::admin

// AdminService (proto/pgward/v1/admin.proto): agents, connections, grants, sessions and audit
// for pgwardctl and automation. Authorizes every call, validates input, and never returns a
// secret except an agent's token once, at creation.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/crypto/secret_box.h"
#include "gateway/admin/admin_interfaces.h"
#include "gateway/store/store.h"
#include "pgward/v1/admin.grpc.pb.h"

namespace pgward::admin {

class AdminServiceImpl : public pgward::v1::AdminService::CallbackService {
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

  grpc::ServerUnaryReactor* CreateAgent(grpc::CallbackServerContext* ctx, const pgward::v1::CreateAgentRequest* req,
                                        pgward::v1::CreateAgentResponse* resp) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* ctx, const pgward::v1::ListAgentsRequest* req,
                                       pgward::v1::ListAgentsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteAgent(grpc::CallbackServerContext* ctx, const pgward::v1::DeleteAgentRequest* req,
                                        pgward::v1::DeleteAgentResponse* resp) override;

  grpc::ServerUnaryReactor* CreateConnection(grpc::CallbackServerContext* ctx,
                                             const pgward::v1::CreateConnectionRequest* req,
                                             pgward::v1::Connection* resp) override;
  grpc::ServerUnaryReactor* UpdateConnection(grpc::CallbackServerContext* ctx,
                                             const pgward::v1::UpdateConnectionRequest* req,
                                             pgward::v1::Connection* resp) override;
  grpc::ServerUnaryReactor* ListConnections(grpc::CallbackServerContext* ctx,
                                            const pgward::v1::ListConnectionsRequest* req,
                                            pgward::v1::ListConnectionsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteConnection(grpc::CallbackServerContext* ctx,
                                             const pgward::v1::DeleteConnectionRequest* req,
                                             pgward::v1::DeleteConnectionResponse* resp) override;

  grpc::ServerUnaryReactor* CreateGrant(grpc::CallbackServerContext* ctx, const pgward::v1::CreateGrantRequest* req,
                                        pgward::v1::Grant* resp) override;
  grpc::ServerUnaryReactor* ListGrants(grpc::CallbackServerContext* ctx, const pgward::v1::ListGrantsRequest* req,
                                       pgward::v1::ListGrantsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteGrant(grpc::CallbackServerContext* ctx, const pgward::v1::DeleteGrantRequest* req,
                                        pgward::v1::DeleteGrantResponse* resp) override;

  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx, const pgward::v1::ListSessionsRequest* req,
                                         pgward::v1::ListSessionsResponse* resp) override;
  grpc::ServerUnaryReactor* KillSession(grpc::CallbackServerContext* ctx, const pgward::v1::KillSessionRequest* req,
                                        pgward::v1::KillSessionResponse* resp) override;

  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* ctx, const pgward::v1::ListAuditRequest* req,
                                      pgward::v1::ListAuditResponse* resp) override;

 private:
  // Authorizes the call, runs `handler(admin_identity)` and finishes the default reactor
  // with its status. Store access is short and local, so it runs on the callback thread.
  template <typename Handler>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx, const char* method, Handler&& handler);
  absl::StatusOr<std::string> AuthorizeCall(const grpc::CallbackServerContext& ctx);

  absl::Status DoCreateConnection(const std::string& admin, const pgward::v1::CreateConnectionRequest& req,
                                  pgward::v1::Connection& resp);
  absl::Status DoUpdateConnection(const std::string& admin, const pgward::v1::UpdateConnectionRequest& req,
                                  pgward::v1::Connection& resp);
  absl::Status DoDeleteConnection(const std::string& admin, const std::string& name);

  store::Store& store_;
  const crypto::SecretBox& secrets_;
  AdminAuthorizer& authorizer_;
  LiveDirectory& live_;
  const std::vector<std::string> trusted_issuers_;
};

}  // namespace pgward::admin

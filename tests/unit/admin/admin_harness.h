// Runs AdminServiceImpl on an in-process gRPC server (127.0.0.1:0, insecure) over an
// in-memory store, with a scripted LiveDirectory, for the admin tests.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "gateway/admin/admin_key_authorizer.h"
#include "common/net/grpc_driver.h"
#include "gateway/admin/admin_service.h"

namespace pgward::admin::testing {

inline constexpr char kAdminKey[] = "test-admin-key-0123456789";
inline constexpr char kIssuer[] = "https://idp.example";  // the one trusted issuer

// The gateway's live view, scripted by the test: which agents are online and which sessions
// run; records kills.
class ScriptedLiveDirectory : public LiveDirectory {
 public:
  bool AgentOnline(const std::string& agent) override {
    absl::MutexLock lock(&mu_);
    return online_.contains(agent);
  }
  uint32_t ActiveSessions(const std::string& agent) override { return AgentOnline(agent) ? 3 : 0; }
  absl::Status KillSession(const std::string& session_id) override {
    absl::MutexLock lock(&mu_);
    if (!live_sessions_.erase(session_id)) return absl::NotFoundError("not live");
    killed_.insert(session_id);
    return absl::OkStatus();
  }
  void SetOnline(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    online_.insert(agent);
  }
  void AddLiveSession(const std::string& id) {
    absl::MutexLock lock(&mu_);
    live_sessions_.insert(id);
  }
  std::set<std::string> Killed() {
    absl::MutexLock lock(&mu_);
    return killed_;
  }
  void AgentDeleted(const std::string& agent) override {
    absl::MutexLock lock(&mu_);
    deleted_agents_.insert(agent);
    online_.erase(agent);
  }
  // Records the revocation; says it ended `sessions_to_end` sessions.
  uint32_t PrincipalRevoked(const pgward::v1::Revocation& revocation) override {
    absl::MutexLock lock(&mu_);
    revocations_.push_back(revocation);
    return sessions_to_end_;
  }
  void SetSessionsToEnd(uint32_t n) {
    absl::MutexLock lock(&mu_);
    sessions_to_end_ = n;
  }
  std::vector<pgward::v1::Revocation> Revocations() {
    absl::MutexLock lock(&mu_);
    return revocations_;
  }
  void AgentTokenRotated(const std::string& agent) override {
    absl::MutexLock lock(&mu_);
    rotated_agents_.push_back(agent);
  }
  std::vector<std::string> RotatedAgents() {
    absl::MutexLock lock(&mu_);
    return rotated_agents_;
  }
  void GrantAdded() override {
    absl::MutexLock lock(&mu_);
    ++grants_added_;
  }
  int GrantsAdded() {
    absl::MutexLock lock(&mu_);
    return grants_added_;
  }
  std::set<std::string> DeletedAgents() {
    absl::MutexLock lock(&mu_);
    return deleted_agents_;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> online_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> live_sessions_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> killed_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> deleted_agents_ ABSL_GUARDED_BY(mu_);
  std::vector<pgward::v1::Revocation> revocations_ ABSL_GUARDED_BY(mu_);
  uint32_t sessions_to_end_ ABSL_GUARDED_BY(mu_) = 0;
  int grants_added_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> rotated_agents_ ABSL_GUARDED_BY(mu_);
};

class AdminHarness {
 public:
  explicit AdminHarness(std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials(),
                        std::shared_ptr<grpc::ChannelCredentials> client_credentials = grpc::InsecureChannelCredentials(),
                        std::vector<std::string> trusted_issuers = {kIssuer})
      : store_(*store::Store::Open(":memory:")),
        secrets_(*crypto::SecretBox::FromKey(std::string(32, 'k'))),
        authorizer_(kAdminKey),
        service_(*store_, secrets_, authorizer_, live_, std::move(trusted_issuers)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterService(service_.service());
    auto queue = builder.AddCompletionQueue();
    server_ = builder.BuildAndStart();
    driver_ = std::make_unique<net::GrpcDriver>(std::move(queue));
    service_.Start(*driver_, handlers_.get_executor());
    channel_ = grpc::CreateChannel(address(), client_credentials);
    stub_ = pgward::v1::AdminService::NewStub(channel_);
  }
  // The server first (its calls in progress finish on `handlers_`), then the handlers, then
  // the driver's queue.
  ~AdminHarness() {
    server_->Shutdown();
    handlers_.join();
    driver_.reset();
  }

  // A client context carrying `authorization: <authorization>` (none if empty).
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& authorization = std::string("Bearer ") +
                                                                                         kAdminKey) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }

  pgward::v1::AdminService::Stub& stub() { return *stub_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  store::Store& store() { return *store_; }
  const crypto::SecretBox& secrets() { return secrets_; }
  ScriptedLiveDirectory& live() { return live_; }

 private:
  std::unique_ptr<store::Store> store_;
  crypto::SecretBox secrets_;
  AdminKeyAuthorizer authorizer_;
  ScriptedLiveDirectory live_;
  AdminServiceImpl service_;
  int port_ = 0;
  asio::thread_pool handlers_{1};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<net::GrpcDriver> driver_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pgward::v1::AdminService::Stub> stub_;
};

}  // namespace pgward::admin::testing

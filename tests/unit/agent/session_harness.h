// The agent's real session machinery (SessionManager, AgentSession, its ClientStream) in one
// process, wired as agent/main.cc wires it, against a FakeGateway and a FakePostgres.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/control/session_manager.h"
#include "agent/inspect/sql_analyzer.h"
#include "agent/upstream/tls_contexts.h"
#include "agent/upstream/upstream_policy.h"
#include "common/net/grpc_driver.h"
#include "tests/unit/agent/fake_gateway.h"
#include "tests/unit/agent/fake_postgres.h"
#include "tests/unit/agent/recording_sink.h"

namespace pgward::agent::testing {

inline constexpr char kAgentName[] = "test-agent";
inline constexpr char kAgentToken[] = "agent-token-1";

// Two I/O threads, as the agent runs by default, so a session's work moves between threads
// the way it does in production. The destructor stops every session still running and waits
// for all of them (and every thread) before the fakes go.
class SessionHarness {
 public:
  SessionHarness()
      : channel_(grpc::CreateChannel(gateway.address(), grpc::InsecureChannelCredentials())),
        stub_(pgward::v1::AgentService::NewStub(channel_)),
        policy_(LoopbackPolicy()),
        sessions_(io_, Deps()) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~SessionHarness() {
    sessions_.StopAll("test_over");
    WaitForNoSessions(absl::Seconds(30));
    work_.reset();
    for (auto& thread : threads_) thread.join();
    // run() returning does not mean every session's work is done: a SerialExecutor runs work on
    // whichever thread brings it, so a session's last steps (say, a detached CancelRequest's
    // completion, queued while the session ran on the gRPC thread) may still be running there,
    // touching objects of io_. Joining the driver's thread waits for them; anything they handed
    // back to io_ runs below.
    grpc_.reset();
    io_.restart();
    io_.run();
    crypto_.join();
  }
  SessionHarness(const SessionHarness&) = delete;
  SessionHarness& operator=(const SessionHarness&) = delete;

  // A grant for `principal` on the fake Postgres (trust login, no TLS: sslmode=disable).
  pgward::v1::SessionGrant Grant(const std::string& session_id, pgward::v1::Mode mode) const {
    pgward::v1::SessionGrant grant;
    grant.set_session_id(session_id);
    grant.set_principal("report-bot");
    grant.set_issuer("https://idp.example");
    grant.set_connection("shop");
    auto* target = grant.mutable_target();
    target->set_host("127.0.0.1");
    target->set_port(postgres.port());
    target->set_database("shop");
    target->set_user("app");
    target->set_sslmode("disable");
    grant.mutable_policy()->set_mode(mode);
    grant.mutable_policy()->set_grant_id("g-7");
    return grant;
  }

  SessionManager& sessions() { return sessions_; }

  // True once the manager has forgotten every session (each one's Run() returned).
  bool WaitForNoSessions(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (sessions_.Count() != 0) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  // Declared first: built before, and destroyed after, the agent side that talks to them.
  FakePostgres postgres;
  FakeGateway gateway;
  RecordingSink sink;

 private:
  static UpstreamPolicy LoopbackPolicy() {
    UpstreamPolicy::Options options;
    options.allow_upstream = {"127.0.0.1:*"};
    return *UpstreamPolicy::Create(options);
  }
  SessionDeps Deps() {
    SessionDeps deps;
    deps.stub = stub_.get();
    deps.grpc = grpc_.get();
    deps.agent_name = kAgentName;
    deps.token = &token_;
    deps.tls = &tls_;
    deps.analyzer = &analyzer_;
    deps.sink = &sink;
    deps.upstream_policy = &policy_;
    deps.crypto_executor = crypto_.get_executor();
    return deps;
  }

  AgentToken token_{kAgentToken};
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pgward::v1::AgentService::Stub> stub_;
  std::unique_ptr<net::GrpcDriver> grpc_ = std::make_unique<net::GrpcDriver>();  // the streams' completions
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  asio::thread_pool crypto_{1};
  TlsContexts tls_;
  inspect::SqlAnalyzer analyzer_;
  UpstreamPolicy policy_;
  SessionManager sessions_;
  std::vector<std::thread> threads_;
};

}  // namespace pgward::agent::testing

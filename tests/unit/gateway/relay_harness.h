// The gateway's session path in one process, for the relay tests: a real Store in a temp dir,
// the real SessionBroker, AgentServiceImpl on an in-process gRPC server (127.0.0.1:0,
// completion-queue API on a GrpcDriver, as gateway/main.cc wires it) and FrontendConnections
// on a loopback Postgres endpoint, with a real TokenVerifier that trusts a test key.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <thread>

#include "common/crypto/secret_box.h"
#include "common/crypto/token_hash.h"
#include "common/net/grpc_driver.h"
#include "common/net/serial_executor.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/agent_service.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/broker/session_broker.h"
#include "gateway/identity/token_verifier.h"
#include "gateway/relay/frontend_connection.h"
#include "gateway/store/store.h"
#include "tests/unit/identity/test_tokens.h"
#include "tests/unit/store/temp_dir.h"

namespace pgward::gateway::testing {

inline constexpr char kIssuer[] = "https://idp.relay.test";
inline constexpr char kAudience[] = "pgward";
inline constexpr char kAgent[] = "agent-a";
inline constexpr char kAgentToken[] = "agent-a-token-0123456789";
inline constexpr char kConnection[] = "db1";
inline constexpr char kPrincipal[] = "report-bot";

class RelayHarness {
 public:
  explicit RelayHarness(std::chrono::milliseconds open_timeout = std::chrono::seconds(10))
      : store_(*store::Store::Open(dir_.File("pgward.db"))),
        secrets_(*crypto::SecretBox::FromKey(std::string(32, 'k'))),
        audit_(*store_),
        broker_(*store_, secrets_, registry_, Options(open_timeout, blocking_.get_executor())),
        agent_service_(*store_, registry_, audit_, broker_, 10000, blocking_.get_executor()),
        key_(identity::testing::TestKey::Ec("relay-key", "P-256")),
        tls_(asio::ssl::context::tls_server),
        acceptor_(io_) {
    Seed();
    StartVerifier();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &grpc_port_);
    builder.RegisterService(agent_service_.service());
    auto queue = builder.AddCompletionQueue();
    server_ = builder.BuildAndStart();
    driver_ = std::make_unique<net::GrpcDriver>(std::move(queue));
    agent_service_.Start(*driver_);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port_), grpc::InsecureChannelCredentials());

    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.bind(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
    pg_port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, AcceptLoop(), asio::detached);
    io_thread_ = std::thread([this] { io_.run(); });
  }

  // Every caller connection first (the test ended its streams; the server's shutdown below
  // cancels what is left), then the gRPC server, the pools and the driver, as main.cc does.
  ~RelayHarness() {
    asio::post(io_, [this] { acceptor_.close(); });
    WaitUntil([this] { return open_connections_.load() == 0; }, std::chrono::seconds(10));
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    WaitUntil([this] { return open_connections_.load() == 0; }, std::chrono::seconds(10));
    io_.stop();
    io_thread_.join();
    broker_.StopExpiryWatch();  // it runs on blocking_ (when a test started it)
    blocking_.join();
    driver_.reset();
  }

  // An access token for kPrincipal from the trusted issuer, valid for ten minutes.
  std::string Token(const std::string& principal = kPrincipal) const {
    const int64_t now = std::time(nullptr);
    return key_.Mint("ES256", {{"iss", kIssuer}, {"aud", kAudience}, {"sub", principal}, {"iat", now},
                               {"exp", now + 600}});
  }

  template <typename Predicate>
  static bool WaitUntil(Predicate done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // The recorded session, or an empty record (session_id "") if there is none.
  pgward::v1::SessionRecord SessionRecord(const std::string& session_id) {
    auto sessions = store_->ListSessions(pgward::v1::ListSessionsRequest());
    if (sessions.ok()) {
      for (const auto& record : *sessions) {
        if (record.session_id() == session_id) return record;
      }
    }
    return {};
  }

  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  uint16_t pg_port() const { return pg_port_; }
  store::Store& store() { return *store_; }
  SessionBroker& broker() { return broker_; }
  AgentRegistry& registry() { return registry_; }
  int open_connections() const { return open_connections_.load(); }

 private:
  static BrokerOptions Options(std::chrono::milliseconds open_timeout, asio::any_io_executor store_executor) {
    BrokerOptions options;
    options.open_timeout = open_timeout;
    options.caps.per_principal = 20;
    options.caps.per_connection = 100;
    options.issuerless_grants_issuer = kIssuer;
    options.store_executor = std::move(store_executor);
    return options;
  }

  // One agent, one connection behind it, and a read-only grant for kPrincipal.
  void Seed() {
    (void)store_->CreateAgent(kAgent, crypto::HashToken(kAgentToken));
    pgward::v1::Connection connection;
    connection.set_name(kConnection);
    connection.set_agent(kAgent);
    connection.set_host("127.0.0.1");
    connection.set_port(5432);
    connection.set_database("app");
    connection.set_user("app");
    connection.set_password_ref("agent-env:PGPASSWORD");
    connection.set_sslmode("disable");
    (void)store_->CreateConnection(connection, "");
    pgward::v1::Grant grant;
    grant.set_principal(kPrincipal);
    grant.set_issuer(kIssuer);
    grant.set_connection(kConnection);
    grant.mutable_policy()->set_mode(pgward::v1::MODE_READ_ONLY);
    (void)store_->CreateGrant(grant);
  }

  void StartVerifier() {
    auto fetcher = std::make_unique<identity::testing::FakeHttpFetcher>();
    const std::string discovery = std::string(kIssuer) + "/.well-known/openid-configuration";
    const std::string jwks = std::string(kIssuer) + "/keys";
    fetcher->Set(discovery, nlohmann::json{{"issuer", kIssuer}, {"jwks_uri", jwks}}.dump());
    fetcher->Set(jwks, identity::testing::JwksOf({key_.Jwk()}));
    identity::VerifierConfig config;
    config.issuers.push_back(identity::IssuerConfig{kIssuer, {kAudience}, ""});
    verifier_ = std::make_unique<identity::TokenVerifier>(std::move(config), std::move(fetcher));
    (void)verifier_->Start();
  }

  // As PgListener::AcceptLoop, with a count the destructor waits on.
  asio::awaitable<void> AcceptLoop() {
    for (;;) {
      auto strand = net::SerialExecutor::Make(io_);
      asio::ip::tcp::socket socket(io_);
      asio::error_code ec;
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      FrontendDeps deps;
      deps.tls = &tls_;
      deps.verifier = verifier_.get();
      deps.broker = &broker_;
      deps.blocking_pool = &blocking_;
      deps.options.allow_insecure_loopback = true;
      ++open_connections_;
      auto connection = std::make_shared<FrontendConnection>(std::move(socket), deps);
      asio::co_spawn(strand, connection->Run(), [this](std::exception_ptr) { --open_connections_; });
    }
  }

  pgward::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  crypto::SecretBox secrets_;
  asio::thread_pool blocking_{2};
  AgentRegistry registry_;
  AuditWriter audit_;
  SessionBroker broker_;
  AgentServiceImpl agent_service_;
  identity::testing::TestKey key_;
  std::unique_ptr<identity::TokenVerifier> verifier_;
  int grpc_port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<net::GrpcDriver> driver_;
  std::shared_ptr<grpc::Channel> channel_;
  asio::io_context io_;
  asio::ssl::context tls_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t pg_port_ = 0;
  std::atomic<int> open_connections_{0};
  std::thread io_thread_;
};

}  // namespace pgward::gateway::testing

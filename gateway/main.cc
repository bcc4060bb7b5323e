// pgward-gateway: parses flags and wires identity, store, broker, endpoints and the admin API.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/secret_box.h"
#include "common/crypto/tls_material.h"
#include "common/net/grpc_driver.h"
#include "common/util/flag_args.h"
#include "common/util/log.h"
#include "common/util/process_hardening.h"
#include "gateway/admin/admin_key_authorizer.h"
#include "gateway/admin/admin_service.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/agent_service.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/broker/session_broker.h"
#include "gateway/events/events_listener.h"
#include "gateway/events/security_event_receiver.h"
#include "gateway/relay/pg_listener.h"
#include "gateway/identity/http_fetcher.h"
#include "gateway/identity/issuer_scoped_name.h"
#include "gateway/identity/introspector.h"
#include "gateway/identity/token_verifier.h"
#include "gateway/store/store.h"

ABSL_FLAG(std::string, data_dir, "/var/lib/pgward", "state directory: pgward.db, admin.key, secret.key, tls/");
ABSL_FLAG(std::string, pg_listen, "0.0.0.0:15432", "Postgres endpoint HOST:PORT");
ABSL_FLAG(std::string, grpc_listen, "0.0.0.0:9443", "gRPC endpoint (AgentService, AdminService) HOST:PORT");
ABSL_FLAG(std::vector<std::string>, oidc_issuer, {}, "trusted issuer URL (repeatable or comma-separated)");
ABSL_FLAG(std::vector<std::string>, oidc_audience, {}, "accepted token audience (repeatable or comma-separated)");
ABSL_FLAG(std::string, oidc_jwks_file, "", "static JWKS file for the (single) issuer instead of discovery");
ABSL_FLAG(std::string, oidc_ca_file, "", "CA bundle for HTTPS discovery and JWKS fetches");
ABSL_FLAG(bool, oidc_introspection, false,
          "check tokens with the issuer's introspection endpoint (RFC 7662) at login and every --recheck-interval "
          "(needs --oidc-client-id and --oidc-client-secret-file; one trusted issuer)");
ABSL_FLAG(std::string, oidc_client_id, "", "the gateway's own client id at the issuer, for introspection");
ABSL_FLAG(std::string, oidc_client_secret_file, "", "file holding that client's secret");
ABSL_FLAG(absl::Duration, recheck_interval, absl::Seconds(30),
          "with --oidc-introspection: how often every live session's token is introspected again");
ABSL_FLAG(std::string, events_listen, "",
          "HTTPS endpoint HOST:PORT for security events pushed by the identity provider (POST /ssf/events, "
          "RFC 8935); off when empty");
ABSL_FLAG(std::string, principal_claim, "sub", "token claim that names the principal");
ABSL_FLAG(std::string, groups_claim, "groups", "token claim that lists the principal's groups");
ABSL_FLAG(std::vector<std::string>, admin_principal, {},
          "OIDC principal allowed to use AdminService (repeatable); ISSUER#NAME when several issuers are trusted");
ABSL_FLAG(std::vector<std::string>, admin_group, {},
          "OIDC group allowed to use AdminService (repeatable); ISSUER#NAME when several issuers are trusted");
ABSL_FLAG(std::string, tls_cert, "", "certificate chain (PEM) for both endpoints; self-signed in DIR/tls if empty");
ABSL_FLAG(std::string, tls_key, "", "private key (PEM) for --tls-cert");
ABSL_FLAG(bool, allow_insecure_loopback, false, "accept plaintext Postgres logins from loopback (development only)");
ABSL_FLAG(int, io_threads, 2, "threads serving caller sockets");
ABSL_FLAG(int, session_open_timeout_ms, 15000, "how long a caller waits for the agent to open its session");
ABSL_FLAG(int, max_connections, 10000, "caller connections accepted at once");
ABSL_FLAG(int, max_sessions_per_principal, 20,
          "live sessions one principal may hold on one connection, unless its grant sets --max-sessions");
ABSL_FLAG(int, max_sessions_per_connection, 100, "live sessions on one connection, all principals together");
ABSL_FLAG(std::string, log_level, "info", "debug|info|warn|error");

namespace {

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "pgward-gateway: " << message << "\n";
  std::exit(2);
}

std::string DieIfError(const absl::StatusOr<std::string>& value, const std::string& what) {
  if (!value.ok()) Die(what + ": " + std::string(value.status().message()));
  return *value;
}


// AgentService messages are session frames (at most 32 KiB of protocol bytes) and event
// batches (at most 512 events, each bounded by the agent); 16 MiB leaves room for those and
// refuses anything larger (RESOURCE_EXHAUSTED) before it is buffered. AdminService requests
// are small.
constexpr int kMaxGrpcReceiveBytes = 16 << 20;

}  // namespace

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles, a cost on every
  // gRPC lock (bench/NOTES.md); debug and test builds keep the check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  // Before anything holds a secret: no core dumps, no ptrace by same-user processes.
  pgward::HardenProcess();
  pgward::InstallCrashReporter();
  absl::SetProgramUsageMessage(
      "pgward-gateway --data-dir DIR --oidc-issuer URL --oidc-audience AUD [--pg-listen HOST:PORT] "
      "[--grpc-listen HOST:PORT] [--tls-cert F --tls-key F] ...");
  std::vector<std::string> args = pgward::NormalizeFlagArgs(argc, argv, {"oidc_issuer", "oidc_audience", "admin_principal", "admin_group"});
  std::vector<char*> arg_pointers = pgward::ArgvPointers(args);
  absl::ParseCommandLine(static_cast<int>(args.size()), arg_pointers.data());
  auto level = pgward::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level) Die("--log-level must be debug, info, warn or error");
  pgward::SetLogLevel(*level);
  std::signal(SIGPIPE, SIG_IGN);

  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (::mkdir(data_dir.c_str(), 0700) != 0 && errno != EEXIST) Die("cannot create --data-dir " + data_dir);
  const auto issuers = absl::GetFlag(FLAGS_oidc_issuer);
  const auto audiences = absl::GetFlag(FLAGS_oidc_audience);
  if (issuers.empty()) Die("at least one --oidc-issuer is required");
  if (audiences.empty()) Die("at least one --oidc-audience is required");
  if (!absl::GetFlag(FLAGS_oidc_jwks_file).empty() && issuers.size() != 1) {
    Die("--oidc-jwks-file needs exactly one --oidc-issuer");
  }
  if (absl::GetFlag(FLAGS_tls_cert).empty() != absl::GetFlag(FLAGS_tls_key).empty()) {
    Die("--tls-cert and --tls-key go together");
  }
  if (absl::GetFlag(FLAGS_max_sessions_per_principal) < 1 || absl::GetFlag(FLAGS_max_sessions_per_connection) < 1) {
    Die("--max-sessions-per-principal and --max-sessions-per-connection must be at least 1");
  }
  // Principals and groups are (issuer, name): with several issuers an admin entry must say
  // which issuer's principal it means.
  auto admin_principals =
      pgward::identity::IssuerScopedNameSet::Parse("--admin-principal", absl::GetFlag(FLAGS_admin_principal), issuers);
  if (!admin_principals.ok()) Die(std::string(admin_principals.status().message()));
  auto admin_groups =
      pgward::identity::IssuerScopedNameSet::Parse("--admin-group", absl::GetFlag(FLAGS_admin_group), issuers);
  if (!admin_groups.ok()) Die(std::string(admin_groups.status().message()));

  // TLS material: the operator's, or a self-signed pair generated once in DIR/tls.
  std::string cert_path = absl::GetFlag(FLAGS_tls_cert);
  std::string key_path = absl::GetFlag(FLAGS_tls_key);
  if (cert_path.empty()) {
    cert_path = data_dir + "/tls/gateway.crt";
    key_path = data_dir + "/tls/gateway.key";
    absl::Status made = pgward::crypto::EnsureSelfSignedCertificate(cert_path, key_path, "pgward-gateway", {});
    if (!made.ok()) Die("cannot create a self-signed certificate: " + std::string(made.message()));
  }
  const std::string cert_pem = DieIfError(pgward::crypto::ReadFileToString(cert_path), "cannot read TLS certificate");
  const std::string key_pem = DieIfError(pgward::crypto::ReadFileToString(key_path), "cannot read TLS key");
  auto fingerprint = pgward::crypto::CertificateSha256Fingerprint(cert_path);
  pgward::Log(pgward::LogLevel::kInfo, "gateway", "TLS certificate ", cert_path, " sha256 ",
              fingerprint.ok() ? *fingerprint : std::string("?"));

  const std::string admin_key = DieIfError(pgward::admin::EnsureAdminKey(data_dir), "cannot prepare admin.key");
  auto secrets = pgward::crypto::SecretBox::LoadOrCreate(data_dir + "/secret.key");
  if (!secrets.ok()) Die("cannot prepare secret.key: " + std::string(secrets.status().message()));
  auto store = pgward::store::Store::Open(data_dir + "/pgward.db");
  if (!store.ok()) Die("cannot open the store: " + std::string(store.status().message()));
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
  (void)(*store)->EndAllOpenSessions(now_ms, "gateway_restart");
  if (issuers.size() > 1) {
    auto issuerless = (*store)->CountIssuerlessGrants();
    if (issuerless.ok() && *issuerless > 0) {
      pgward::Log(pgward::LogLevel::kWarn, "gateway", *issuerless,
                  " grant(s) name no issuer and now match nobody, because several issuers are trusted; "
                  "re-create them with --issuer (pgwardctl grant list shows ISSUER \"-\")");
    }
  }

  pgward::identity::VerifierConfig verifier_config;
  for (const auto& issuer : issuers) {
    pgward::identity::IssuerConfig config;
    config.issuer_url = issuer;
    config.audiences = audiences;
    config.jwks_file = absl::GetFlag(FLAGS_oidc_jwks_file);
    verifier_config.issuers.push_back(config);
  }
  verifier_config.principal_claim = absl::GetFlag(FLAGS_principal_claim);
  verifier_config.groups_claim = absl::GetFlag(FLAGS_groups_claim);
  verifier_config.ca_file = absl::GetFlag(FLAGS_oidc_ca_file);
  pgward::identity::TokenVerifier verifier(verifier_config,
                                           pgward::identity::MakeCurlHttpFetcher(verifier_config.ca_file));
  absl::Status started = verifier.Start();
  if (!started.ok()) Die("OIDC set-up failed: " + std::string(started.message()));

  // Introspection (RFC 7662): the IdP's word on each token, at login and on an interval.
  std::unique_ptr<pgward::identity::HttpFetcher> introspection_http;
  std::unique_ptr<pgward::identity::Introspector> introspector;
  const absl::Duration recheck_interval = absl::GetFlag(FLAGS_recheck_interval);
  if (absl::GetFlag(FLAGS_oidc_introspection)) {
    if (issuers.size() != 1) Die("--oidc-introspection works with exactly one --oidc-issuer");
    if (absl::GetFlag(FLAGS_oidc_client_id).empty() || absl::GetFlag(FLAGS_oidc_client_secret_file).empty()) {
      Die("--oidc-introspection needs --oidc-client-id and --oidc-client-secret-file");
    }
    if (recheck_interval < absl::Seconds(1) || recheck_interval > absl::Hours(24)) {
      Die("--recheck-interval must be from 1s to 24h");
    }
    auto secret_text = pgward::crypto::ReadFileToString(absl::GetFlag(FLAGS_oidc_client_secret_file), 4096);
    if (!secret_text.ok()) Die("cannot read --oidc-client-secret-file: " + std::string(secret_text.status().message()));
    pgward::identity::IntrospectionConfig config;
    config.issuer = issuers[0];
    config.audiences = audiences;
    config.client_id = absl::GetFlag(FLAGS_oidc_client_id);
    config.client_secret = std::string(absl::StripAsciiWhitespace(*secret_text));
    if (config.client_secret.empty()) Die("--oidc-client-secret-file is empty");
    config.principal_claim = absl::GetFlag(FLAGS_principal_claim);
    config.groups_claim = absl::GetFlag(FLAGS_groups_claim);
    // A login reuses an answer for at most half the re-check interval (and 10 s).
    config.cache_ttl = std::chrono::seconds(
        std::clamp<int64_t>(absl::ToInt64Seconds(recheck_interval) / 2, 0, 10));
    introspection_http = pgward::identity::MakeCurlHttpFetcher(verifier_config.ca_file);
    introspector = std::make_unique<pgward::identity::Introspector>(std::move(config), *introspection_http);
    if (absl::Status s = introspector->Start(); !s.ok()) Die("introspection set-up failed: " + std::string(s.message()));
    pgward::Log(pgward::LogLevel::kInfo, "gateway", "introspecting tokens at ", introspector->endpoint(),
                " as client ", absl::GetFlag(FLAGS_oidc_client_id), "; live sessions re-checked every ",
                absl::FormatDuration(recheck_interval));
  }

  pgward::admin::AdminKeyAuthorizer authorizer(
      admin_key, [&](std::string_view bearer) -> absl::StatusOr<std::string> {
        auto token = verifier.Verify(bearer);
        if (!token.ok()) return token.status();
        // The admin identity for logs and created_by names its issuer when several are trusted.
        const std::string who = pgward::identity::FormatIssuerScopedName(token->issuer, token->principal, issuers);
        if (admin_principals->Contains(token->issuer, token->principal)) return who;
        for (const auto& group : token->groups) {
          if (admin_groups->Contains(token->issuer, group)) return who;
        }
        return absl::PermissionDeniedError("principal is not an administrator");
      });

  pgward::gateway::AgentRegistry registry;
  pgward::gateway::AuditWriter audit(**store);
  pgward::gateway::BrokerOptions broker_options;
  broker_options.open_timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_session_open_timeout_ms));
  broker_options.caps.per_principal = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_sessions_per_principal));
  broker_options.caps.per_connection = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_sessions_per_connection));
  broker_options.issuerless_grants_issuer = issuers.size() == 1 ? issuers.front() : std::string();
  // Token verification (JWKS fetches) and the broker's store accesses: off the I/O threads.
  asio::thread_pool blocking_pool(2);
  broker_options.store_executor = blocking_pool.get_executor();
  pgward::gateway::SessionBroker broker(**store, *secrets, registry, broker_options);
  broker.StartExpiryWatch();
  pgward::gateway::AgentServiceImpl agent_service(**store, registry, audit, broker, 10000,
                                                  blocking_pool.get_executor());
  pgward::admin::AdminServiceImpl admin_service(**store, *secrets, authorizer, broker, issuers);
  // Admin calls (store scans, OIDC verification of an admin's token) on a thread of their own:
  // a long audit listing never delays a caller's login.
  asio::thread_pool admin_pool(1);

  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_grpc_listen), grpc::SslServerCredentials(ssl), &grpc_port);
  builder.RegisterService(agent_service.service());
  builder.RegisterService(admin_service.service());
  // Every service is on the completion-queue API, polled by one thread (common/net/grpc_driver.h):
  // no callback service may be registered, or gRPC's callback threads join the poller rotation.
  std::unique_ptr<grpc::ServerCompletionQueue> grpc_queue = builder.AddCompletionQueue();
  builder.SetMaxReceiveMessageSize(kMaxGrpcReceiveBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Backpressure from a slow caller reaches the agent through HTTP/2 flow control: what the
  // gateway has received but not yet written to the caller is at most a stream's window. gRPC's
  // BDP probing grows that window with the measured bandwidth (megabytes per session on
  // loopback), which a caller reading slowly turns into resident memory (a slow reader took the
  // gateway from 30 to 65-88 MB). A fixed 4 MiB per stream is plenty for the hop's round trip
  // and kept it at 36 MB with the same throughput (bench/run.sh --bulk).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 4 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) Die("cannot listen for gRPC on " + absl::GetFlag(FLAGS_grpc_listen));
  pgward::net::GrpcDriver grpc_driver(std::move(grpc_queue));
  agent_service.Start(grpc_driver);
  admin_service.Start(grpc_driver, admin_pool.get_executor());

  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_server);
  tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  tls.use_certificate_chain(asio::buffer(cert_pem));
  tls.use_private_key(asio::buffer(key_pem), asio::ssl::context::pem);
  // Session resumption makes reconnect storms cheap (ARCHITECTURE.md: connection setup).
  static const unsigned char kSessionContext[] = "pgward";
  SSL_CTX_set_session_id_context(tls.native_handle(), kSessionContext, sizeof(kSessionContext) - 1);
  SSL_CTX_set_session_cache_mode(tls.native_handle(), SSL_SESS_CACHE_SERVER);

  pgward::gateway::FrontendDeps deps;
  deps.tls = &tls;
  deps.verifier = &verifier;
  deps.introspector = introspector.get();
  deps.broker = &broker;
  deps.blocking_pool = &blocking_pool;
  deps.options.allow_insecure_loopback = absl::GetFlag(FLAGS_allow_insecure_loopback);
  pgward::gateway::PgListener listener(io, deps, static_cast<size_t>(absl::GetFlag(FLAGS_max_connections)));
  absl::Status listening = listener.Listen(absl::GetFlag(FLAGS_pg_listen));
  if (!listening.ok()) Die(std::string(listening.message()));
  asio::co_spawn(io, listener.AcceptLoop(), asio::detached);

  // The identity provider's revocation events (RFC 8935 push of CAEP/RISC SETs): the subject's
  // cut-off is stored first, so its tokens issued before the event are refused from then on
  // (and after a restart), then its live sessions with such tokens end.
  std::unique_ptr<pgward::events::SecurityEventReceiver> event_receiver;
  std::unique_ptr<pgward::events::EventsListener> events_listener;
  if (!absl::GetFlag(FLAGS_events_listen).empty()) {
    event_receiver = std::make_unique<pgward::events::SecurityEventReceiver>(
        [&verifier](std::string_view set) { return verifier.VerifySecurityEvent(set); },
        [&store, &broker](const pgward::events::SubjectEvent& event) -> absl::StatusOr<uint32_t> {
          const int64_t received_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch()).count();
          auto cutoff = (*store)->RaiseSubjectCutoff(event.subject_issuer, event.subject, event.event_unix,
                                                     event.type, received_ms);
          if (!cutoff.ok()) return cutoff.status();
          return broker.SubjectRevoked(event.subject_issuer, event.subject, *cutoff,
                                       pgward::events::EventName(event.type));
        });
    events_listener = std::make_unique<pgward::events::EventsListener>(io, tls, blocking_pool, *event_receiver);
    absl::Status events_listening = events_listener->Listen(absl::GetFlag(FLAGS_events_listen));
    if (!events_listening.ok()) Die("--events-listen: " + std::string(events_listening.message()));
    asio::co_spawn(io, events_listener->AcceptLoop(), asio::detached);
  }

  pgward::Log(pgward::LogLevel::kInfo, "gateway", "pgward-gateway ", PGWARD_VERSION, " listening: postgres :",
              listener.port(), ", grpc :", grpc_port,
              events_listener ? absl::StrCat(", events https :", events_listener->port(), pgward::events::kEventsPath)
                              : std::string(),
              ", data dir ", data_dir);

  // The re-check: every interval, each live session's token is introspected again (no cache);
  // those the IdP no longer calls active end (57P01, token_revoked).
  std::thread recheck;
  if (introspector) {
    recheck = std::thread([&broker, &introspector, recheck_interval] {
      const auto interval = absl::ToChronoMilliseconds(recheck_interval);
      for (;;) {
        std::this_thread::sleep_for(interval);
        broker.RecheckTokens([&](const std::string& token) -> absl::StatusOr<bool> {
          auto answer = introspector->Introspect(token, /*use_cache=*/false);
          if (absl::IsUnavailable(answer.status())) return answer.status();
          // Anything the IdP said other than "active and acceptable" ends the session.
          return answer.ok() && answer->has_value();
        });
      }
    });
    recheck.detach();  // the process ends by _Exit; nothing to hand back
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code&, int signal) {
    pgward::Log(pgward::LogLevel::kInfo, "gateway", "signal ", signal, ": stopping");
    std::_Exit(0);
  });
  auto work = asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, absl::GetFlag(FLAGS_io_threads)); ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : threads) t.join();
  server->Shutdown();  // before the driver's queue shuts down
  return 0;
}

// pgward-agent: parses flags and wires the control stream, sessions and event queue.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <asio.hpp>
#include <csignal>
#include <functional>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/flags/usage.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "agent/control/control_client.h"
#include "agent/control/event_queue.h"
#include "agent/control/event_spool.h"
#include "agent/control/queue_sink.h"
#include "agent/control/session_manager.h"
#include "agent/inspect/sql_analyzer.h"
#include "agent/upstream/tls_contexts.h"
#include "agent/upstream/upstream_policy.h"
#include "agent/upstream/upstream_pool.h"
#include "common/crypto/random.h"
#include "common/crypto/tls_material.h"
#include "common/util/flag_args.h"
#include "common/util/log.h"
#include "common/util/process_hardening.h"

ABSL_FLAG(std::string, gateway, "localhost:9443", "gateway gRPC address HOST:PORT");
ABSL_FLAG(std::string, name, "", "this agent's name, as created with `pgwardctl agent create`");
ABSL_FLAG(std::string, token_file, "", "file holding the agent token (shown once by `pgwardctl agent create`)");
ABSL_FLAG(std::string, ca_file, "", "CA bundle to verify the gateway (e.g. the gateway's tls/gateway.crt); system roots if empty");
ABSL_FLAG(std::string, tls_server_name, "", "expected name in the gateway certificate, if not the host in --gateway");
ABSL_FLAG(std::string, data_dir, "",
          "directory for agent state: the event spool (DIR/spool) that keeps every statement's audit record until "
          "the gateway has stored it, across agent crashes; without it events are kept in memory only");
ABSL_FLAG(int64_t, spool_max_bytes, int64_t{256} << 20,
          "bound of the event spool; when this much awaits the gateway's acknowledgement, new statements are refused "
          "(ERROR 53000) until it has room");
ABSL_FLAG(absl::Duration, spool_sync_interval, absl::Milliseconds(20),
          "how often the event spool is flushed to disk (fdatasync); every record is written to the kernel before "
          "its statement runs, so only a machine crash can lose this window");
ABSL_FLAG(int, io_threads, 2, "threads serving upstream sockets");
ABSL_FLAG(std::string, log_level, "info", "debug|info|warn|error");
ABSL_FLAG(bool, upstream_pool, true,
          "keep logged-in upstream connections between sessions of the same principal, connection, credential, "
          "policy and startup parameters (reset with DISCARD ALL before reuse); false: one login per session");
ABSL_FLAG(int, upstream_pool_max_idle_per_key, 4,
          "idle upstream connections kept per (connection, principal, policy, credential, startup parameters)");
ABSL_FLAG(int, upstream_pool_max_idle, 64, "idle upstream connections kept in total");
ABSL_FLAG(absl::Duration, upstream_pool_idle_timeout, absl::Seconds(60),
          "an idle upstream connection not reused within this time is closed");
ABSL_FLAG(std::vector<std::string>, allow_upstream, {},
          "repeatable HOST[:PORT]: a database host this agent may connect to (DNS name, IP address, CIDR "
          "block or *; PORT a number or *, default 5432). Without any, every session is refused");
ABSL_FLAG(std::vector<std::string>, allow_credential, {},
          "repeatable agent-env:NAME or agent-file:/PATH a connection may use as its password reference; a "
          "trailing * matches any rest (agent-env:SHOP_*). gateway: references need no entry");
ABSL_FLAG(bool, allow_weak_upstream_auth, false,
          "answer md5 and cleartext password requests over TLS whose certificate is not verified "
          "(never over plaintext; verify-full TLS needs no flag)");

ABSL_FLAG(int, event_batch_window_ms, 2,
          "how long statement events may wait to share one message to the gateway (0: send each at once; "
          "statements never wait on this, only their audit rows)");
ABSL_FLAG(int, event_batch_max, 256, "events that end the batching window early (1-512)");

namespace {

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "pgward-agent: " << message << "\n";
  std::exit(2);
}


}  // namespace

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles, a cost on every
  // gRPC lock (bench/NOTES.md); debug and test builds keep the check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  absl::SetProgramUsageMessage(
      "pgward-agent --gateway HOST:PORT --name NAME --token-file F --ca-file F --data-dir DIR");
  // Before anything holds a secret: no core dumps, no same-user ptrace.
  pgward::HardenProcess();
  pgward::InstallCrashReporter();
  std::vector<std::string> args = pgward::NormalizeFlagArgs(argc, argv, {"allow_upstream", "allow_credential"});
  std::vector<char*> arg_pointers = pgward::ArgvPointers(args);
  absl::ParseCommandLine(static_cast<int>(args.size()), arg_pointers.data());
  auto level = pgward::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level) Die("--log-level must be debug, info, warn or error");
  pgward::SetLogLevel(*level);
  if (absl::GetFlag(FLAGS_event_batch_window_ms) < 0 || absl::GetFlag(FLAGS_event_batch_window_ms) > 1000) {
    Die("--event-batch-window-ms must be between 0 and 1000");
  }
  if (absl::GetFlag(FLAGS_event_batch_max) < 1 || absl::GetFlag(FLAGS_event_batch_max) > 512) {
    Die("--event-batch-max must be between 1 and 512");
  }
  const std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) Die("--name is required");
  if (absl::GetFlag(FLAGS_token_file).empty()) Die("--token-file is required");
  auto token_text = pgward::crypto::ReadFileToString(absl::GetFlag(FLAGS_token_file), 4096);
  if (!token_text.ok()) Die("cannot read --token-file: " + std::string(token_text.status().message()));
  auto first_token = pgward::agent::ParseTokenFile(*token_text);
  if (!first_token.ok()) Die("--token-file is empty");
  pgward::agent::AgentToken agent_token(*std::move(first_token), absl::GetFlag(FLAGS_token_file));
  pgward::agent::UpstreamPolicy::Options policy_options;
  policy_options.allow_upstream = absl::GetFlag(FLAGS_allow_upstream);
  policy_options.allow_credential = absl::GetFlag(FLAGS_allow_credential);
  policy_options.allow_weak_auth = absl::GetFlag(FLAGS_allow_weak_upstream_auth);
  auto upstream_policy = pgward::agent::UpstreamPolicy::Create(policy_options);
  if (!upstream_policy.ok()) Die(std::string(upstream_policy.status().message()));
  if (!absl::GetFlag(FLAGS_data_dir).empty()) {
    ::mkdir(absl::GetFlag(FLAGS_data_dir).c_str(), 0700);
  }

  grpc::SslCredentialsOptions ssl;
  if (!absl::GetFlag(FLAGS_ca_file).empty()) {
    auto ca = pgward::crypto::ReadFileToString(absl::GetFlag(FLAGS_ca_file));
    if (!ca.ok()) Die("cannot read --ca-file: " + std::string(ca.status().message()));
    ssl.pem_root_certs = *ca;
  }
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  channel_args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  channel_args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  channel_args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20);
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
  if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
    channel_args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
  }
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_gateway), grpc::SslCredentials(ssl), channel_args);
  auto stub = pgward::v1::AgentService::NewStub(channel);

  // Every gRPC call of the agent completes on this one thread (grpc_driver.h).
  pgward::net::GrpcDriver grpc_driver;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  // SCRAM's PBKDF2 (up to crypto::kMaxScramIterations rounds) runs here, never on the I/O
  // threads: one login's key derivation must not stall other sessions' relays.
  asio::thread_pool crypto_pool(1);
  pgward::agent::TlsContexts tls;
  pgward::inspect::SqlAnalyzer analyzer;

  pgward::agent::ControlClient* control = nullptr;
  pgward::agent::EventQueue events(pgward::crypto::NewSessionId(), 100000, [&control] {
    if (control != nullptr) control->Wake();
  });
  // The event spool: what earlier boots left is resent (and their statements whose result
  // never came are recorded, outcome unknown) before any new session starts.
  std::unique_ptr<pgward::agent::EventSpool> spool;
  if (!absl::GetFlag(FLAGS_data_dir).empty()) {
    pgward::agent::SpoolOptions spool_options;
    spool_options.dir = absl::GetFlag(FLAGS_data_dir) + "/spool";
    if (absl::GetFlag(FLAGS_spool_max_bytes) < (int64_t{1} << 20)) {
      Die("--spool-max-bytes must be at least 1048576 (1 MiB)");
    }
    spool_options.max_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_spool_max_bytes));
    spool_options.segment_bytes = std::min<uint64_t>(spool_options.segment_bytes, spool_options.max_bytes / 4);
    if (absl::GetFlag(FLAGS_spool_sync_interval) <= absl::ZeroDuration()) Die("--spool-sync-interval must be positive");
    spool_options.sync_interval = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_spool_sync_interval));
    pgward::agent::SpoolRecovery recovered;
    auto opened = pgward::agent::EventSpool::Open(spool_options, events.boot_id(), &recovered);
    if (!opened.ok()) Die("--data-dir: cannot open the event spool: " + std::string(opened.status().message()));
    spool = *std::move(opened);
    events.SetSpool(spool.get());
    size_t resent = 0;
    for (const auto& boot : recovered.boots) resent += boot.events.size();
    for (auto& [event, intent_id] : recovered.unknown) {
      pgward::v1::AgentEvent wrapped;
      *wrapped.mutable_statement() = std::move(event);
      events.Append(std::move(wrapped), pgward::agent::StatementLink{intent_id, 0});
    }
    if (recovered.segments > 0) {
      pgward::Log(pgward::LogLevel::kInfo, "spool", "recovered ", recovered.segments, " segment(s), ",
                  recovered.bytes, " bytes: ", resent, " event(s) of ", recovered.boots.size(),
                  " earlier boot(s) to send again, ", recovered.unknown.size(),
                  " statement(s) whose result never came recorded with outcome unknown",
                  recovered.dropped_bytes > 0 ? absl::StrCat("; ", recovered.dropped_bytes, " torn bytes skipped")
                                              : std::string());
    }
    events.AddEarlierBoots(std::move(recovered.boots));
    spool->RecoveryWritten();
  } else {
    pgward::Log(pgward::LogLevel::kWarn, "agent",
                "no --data-dir: statement events are kept in memory only, so an agent crash loses those the "
                "gateway has not yet acknowledged");
  }
  pgward::agent::QueueSink sink(events);

  pgward::agent::UpstreamPoolOptions pool_options;
  pool_options.enabled = absl::GetFlag(FLAGS_upstream_pool);
  if (absl::GetFlag(FLAGS_upstream_pool_max_idle_per_key) < 0 || absl::GetFlag(FLAGS_upstream_pool_max_idle) < 0 ||
      absl::GetFlag(FLAGS_upstream_pool_idle_timeout) <= absl::ZeroDuration()) {
    Die("--upstream-pool-max-idle-per-key and --upstream-pool-max-idle must be >= 0 and "
        "--upstream-pool-idle-timeout > 0");
  }
  pool_options.max_idle_per_key = static_cast<size_t>(absl::GetFlag(FLAGS_upstream_pool_max_idle_per_key));
  pool_options.max_idle_total = static_cast<size_t>(absl::GetFlag(FLAGS_upstream_pool_max_idle));
  pool_options.idle_timeout = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_upstream_pool_idle_timeout));
  pgward::agent::UpstreamPool upstream_pool(pool_options);
  upstream_pool.StartSweeper(io.get_executor());

  pgward::agent::SessionDeps deps;
  deps.upstream_pool = &upstream_pool;
  deps.stub = stub.get();
  deps.grpc = &grpc_driver;
  deps.agent_name = name;
  deps.token = &agent_token;
  deps.tls = &tls;
  deps.analyzer = &analyzer;
  deps.sink = &sink;
  deps.upstream_policy = &*upstream_policy;
  deps.crypto_executor = crypto_pool.get_executor();
  pgward::agent::SessionManager sessions(io, deps);

  pgward::agent::ControlOptions options;
  options.agent_name = name;
  options.token = &agent_token;
  options.version = PGWARD_VERSION;
  options.event_batching.window = std::chrono::milliseconds(absl::GetFlag(FLAGS_event_batch_window_ms));
  options.event_batching.max_events = static_cast<size_t>(absl::GetFlag(FLAGS_event_batch_max));
  pgward::agent::ControlClient client(io, *stub, grpc_driver, options, sessions, events);
  control = &client;
  asio::co_spawn(client.executor(), client.Run(), asio::detached);

  // SIGHUP: read --token-file again and reconnect with it (after pgwardctl agent rotate), keeping
  // every live session.
  asio::signal_set hangups(io, SIGHUP);
  std::function<void()> await_hangup = [&] {
    hangups.async_wait([&](const asio::error_code& ec, int) {
      if (ec) return;
      pgward::Log(pgward::LogLevel::kInfo, "agent", "SIGHUP: re-reading --token-file and reconnecting");
      client.Reconnect();
      await_hangup();
    });
  };
  await_hangup();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code&, int signal) {
    pgward::Log(pgward::LogLevel::kInfo, "agent", "signal ", signal, ": stopping");
    sessions.StopAll("agent_shutdown");
    std::_Exit(0);
  });
  pgward::Log(pgward::LogLevel::kInfo, "agent", "pgward-agent ", PGWARD_VERSION, " starting as ", name,
              ", gateway ", absl::GetFlag(FLAGS_gateway));
  if (upstream_policy->allows_no_upstream()) {
    pgward::Log(pgward::LogLevel::kWarn, "agent",
                "no --allow-upstream given: every session will be refused until the agent is started with "
                "--allow-upstream HOST[:PORT] for the databases it may serve");
  }

  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, absl::GetFlag(FLAGS_io_threads)); ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& t : threads) t.join();
  return 0;
}

// Opens one upstream Postgres connection and logs in: TLS per sslmode, then SCRAM, md5 or password.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/upstream/tls_contexts.h"
#include "agent/upstream/upstream_policy.h"
#include "common/net/maybe_tls_stream.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

struct UpstreamConnection {
  std::unique_ptr<net::MaybeTlsStream> stream;
  std::vector<std::pair<std::string, std::string>> parameters;  // ParameterStatus after login
  int32_t backend_pid = 0;
  uint32_t backend_key = 0;
};

struct UpstreamLoginRequest {
  const pgward::v1::UpstreamTarget* target = nullptr;
  std::string password;
  // Sent in the StartupMessage after user and database, in order.
  std::vector<std::pair<std::string, std::string>> startup_parameters;
  std::chrono::milliseconds timeout{10000};
  // Decides which password requests are answered over which transport. Required.
  const UpstreamPolicy* policy = nullptr;
  // Where SCRAM's PBKDF2 runs: never the I/O threads, whose other sessions it would stall.
  // Required.
  asio::any_io_executor crypto_executor;
};

// Errors carry a message safe to show the caller (never the password).
asio::awaitable<absl::StatusOr<UpstreamConnection>> LoginUpstream(UpstreamLoginRequest request,
                                                                  TlsContexts& tls);

// Escapes a value for the startup "options" parameter: Postgres splits it on whitespace and
// honours backslash escapes (postmaster.c pg_split_opts).
std::string EscapeStartupOption(std::string_view value);

// Sends a CancelRequest for (pid, key) on a fresh connection, as libpq 15 does (plaintext), and
// waits for the server to close it. Everything (resolve, connect, write, the wait) ends within
// `deadline`; the socket is closed on every path.
asio::awaitable<absl::Status> SendUpstreamCancel(const pgward::v1::UpstreamTarget& target,
                                                 int32_t pid, uint32_t key,
                                                 std::chrono::milliseconds deadline = std::chrono::seconds(5));

}  // namespace pgward::agent

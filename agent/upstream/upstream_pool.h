// Idle, logged-in upstream connections kept for the next session of the same principal under the
// same connection, credential, policy and startup parameters; reset with DISCARD ALL on return.
#pragma once

#include <asio.hpp>

#include <atomic>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/upstream/upstream_login.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

struct UpstreamPoolOptions {
  bool enabled = true;
  size_t max_idle_per_key = 4;
  size_t max_idle_total = 64;
  std::chrono::milliseconds idle_timeout{60000};
  // How long the DISCARD ALL on return, or the SET on reuse, may take before the connection is
  // closed instead.
  std::chrono::milliseconds reset_timeout{5000};
};

// The pool key: a SHA-256 digest (hex) over everything that decides what an upstream connection
// is and whom it acts for: the connection name, the whole target (host, port, database, user,
// sslmode, CA file, credential reference), a digest of the resolved password (a rotated
// credential never reuses an old login), the principal, issuer and groups, the policy, and the
// exact startup parameters sent at login except pgward.session_id (set per session on reuse).
// Two sessions share a connection only if every one of these is equal. InvalidArgument (safe to
// show) when the grant's startup parameters are refused.
absl::StatusOr<std::string> UpstreamPoolKey(const pgward::v1::SessionGrant& grant, std::string_view password);

// Sends `sql` as a simple Query on a connection at ReadyForQuery idle and reads its answer, which
// must be exactly one CommandComplete `tag` and then ReadyForQuery 'I' as the last bytes read.
// ParameterStatus is accepted only when it keeps a watched setting (pinned_settings.h) at its
// login value, and is recorded in conn.parameters; NoticeResponse and NotificationResponse are
// dropped. Anything else, or no answer within `timeout`, is an error: the connection is then in
// an unknown state and must be closed.
asio::awaitable<absl::Status> RunResetQuery(UpstreamConnection& conn, std::string_view sql, std::string_view tag,
                                            std::chrono::milliseconds timeout);

// Closes an upstream connection, telling the server first (Terminate) when the socket takes it.
void CloseUpstreamConnection(UpstreamConnection& conn);

// Thread-safe. A connection enters only through Release (after its reset succeeded) and leaves
// through Acquire for the same key, or is closed: never handed to another key.
class UpstreamPool {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  explicit UpstreamPool(UpstreamPoolOptions options, Clock now = nullptr);
  ~UpstreamPool();  // closes the idle connections
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  bool enabled() const { return options_.enabled; }

  // An idle connection for `key`, most recently returned first, that is still open (a
  // non-blocking peek sees neither bytes nor EOF: a backend ended by pg_terminate_backend has
  // sent a FATAL and closed) and takes `SET pgward.session_id`. Connections failing either are
  // closed and the next is tried. nullopt: none left, log in afresh.
  asio::awaitable<std::optional<UpstreamConnection>> Acquire(const std::string& key, std::string_view session_id);

  // A session that ended cleanly at ReadyForQuery idle hands its connection back: DISCARD ALL
  // now (so reuse is instant), then kept under the bounds, or closed if the reset failed.
  asio::awaitable<void> Release(std::string key, UpstreamConnection conn);

  // Keeps an already reset connection. Past max_idle_per_key it is closed; past max_idle_total
  // the longest-idle connection of any key is closed to make room. False when closed.
  bool Put(const std::string& key, UpstreamConnection conn);
  // The most recently kept idle connection for `key`, without any check (Acquire checks).
  std::optional<UpstreamConnection> TakeIdle(const std::string& key);
  // Closes connections idle for longer than idle_timeout; Put and TakeIdle call it too.
  void CloseExpired();
  // Runs CloseExpired periodically on `executor` for as long as the pool lives.
  void StartSweeper(asio::any_io_executor executor);

  size_t IdleCount() const;
  size_t IdleCount(const std::string& key) const;

 private:
  struct Idle {
    UpstreamConnection conn;
    std::chrono::steady_clock::time_point since;
  };
  // Removes expired entries into `closing` (closed outside the lock).
  void TakeExpiredLocked(std::vector<UpstreamConnection>& closing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const UpstreamPoolOptions options_;
  const Clock now_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::deque<Idle>> idle_ ABSL_GUARDED_BY(mu_);  // oldest first
  size_t total_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);  // for the sweeper's timer
};

}  // namespace pgward::agent

// A scripted PostgreSQL server on 127.0.0.1:0 for the agent's session tests: just enough of
// protocol v3 (trust login, simple Query, Sync, Terminate, CancelRequest) to be a session's
// upstream, and a record of what reached it.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pgward::agent::testing {

// Runs on a thread of its own. Every login succeeds without a password (AuthenticationOk),
// reports the ParameterStatus values a real server reports, and gives each connection its own
// backend pid (kFirstPid, kFirstPid + 1, ...). A Query is answered with one row ("1") and
// CommandComplete "SELECT 1", except one starting with "SELECT pg_sleep", which is left
// running until a CancelRequest for its backend ends it with ERROR 57014 (or forever), so a
// test can cancel or kill it. BEGIN, COMMIT and ROLLBACK keep a transaction status, and a
// Query calling pg_catalog.int4div(1, 0) fails with 22012 (failing an open transaction: a
// COMMIT then answers ROLLBACK), as a real server does. The test thread reads what arrived
// through the accessors, which wait up to a timeout for it.
class FakePostgres {
 public:
  static constexpr int32_t kFirstPid = 4242;
  static constexpr uint32_t kBackendKey = 0x5eed;

  FakePostgres();
  ~FakePostgres();
  FakePostgres(const FakePostgres&) = delete;
  FakePostgres& operator=(const FakePostgres&) = delete;

  uint16_t port() const { return port_; }

  // The StartupMessage parameters of the `index`th session connection (not cancel requests),
  // waiting up to `timeout` for it to arrive; empty if it did not.
  std::vector<std::pair<std::string, std::string>> StartupParameters(size_t index, absl::Duration timeout);
  // The texts of the Query messages received on every connection so far, in order.
  std::vector<std::string> Queries();
  // Waits until at least `count` Query messages arrived.
  bool WaitForQueries(size_t count, absl::Duration timeout);
  // The texts of the Parse messages received on every connection so far, in order.
  std::vector<std::string> Parses();
  size_t Syncs();
  bool WaitForSyncs(size_t count, absl::Duration timeout);
  // Waits until every session connection that logged in has ended: closed by the agent, or
  // after its Terminate.
  bool WaitUntilAllClosed(absl::Duration timeout);
  bool terminated_cleanly(size_t index);  // the connection's last message was Terminate
  // The (pid, key) of each CancelRequest received, waiting for at least `count`.
  bool WaitForCancels(size_t count, absl::Duration timeout);
  std::vector<std::pair<int32_t, uint32_t>> Cancels();
  // pg_terminate_backend on every open connection: FATAL 57P01, then the server closes it.
  void TerminateAll();
  // The bytes one answered Query receives, as the caller must see them.
  static std::string QueryAnswer();

 private:
  struct Connection {
    explicit Connection(asio::ip::tcp::socket s) : socket(std::move(s)) {}
    asio::ip::tcp::socket socket;
    std::vector<std::pair<std::string, std::string>> startup;  // guarded by FakePostgres::mu_
    bool logged_in = false;    // guarded by FakePostgres::mu_
    bool closed = false;       // guarded by FakePostgres::mu_
    bool terminated = false;   // guarded by FakePostgres::mu_
    bool sleeping = false;     // running a pg_sleep; the server's thread only
    char status = 'I';         // transaction status ('I', 'T', 'E'); the server's thread only
    bool skipping = false;     // discarding an extended batch after its error, until Sync; ditto
    std::string parsed;        // the unnamed statement's text; ditto
  };

  asio::awaitable<void> Accept();
  asio::awaitable<void> Serve(std::shared_ptr<Connection> conn);
  void Record(const std::function<void()>& change);
  // AwaitWithTimeout, not a CondVar: the TSan build sees absl::Mutex through
  // tests/sanitizers/absl_mutex_tsan.cc, which wraps Await and AwaitWithTimeout but no CondVar.
  bool WaitFor(const std::function<bool()>& done, absl::Duration timeout);

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);  // session logins
  std::vector<std::string> queries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> parses_ ABSL_GUARDED_BY(mu_);
  size_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<int32_t, uint32_t>> cancels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<Connection>> all_;  // every accepted connection; the server's thread only
  std::thread thread_;
};

}  // namespace pgward::agent::testing

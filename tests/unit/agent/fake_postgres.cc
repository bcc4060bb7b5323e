#include "tests/unit/agent/fake_postgres.h"

#include <cstring>
#include <functional>
#include <optional>
#include <system_error>

#include "absl/strings/match.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/startup.h"
#include "common/pgwire/wire_writer.h"

namespace pgward::agent::testing {
namespace {

using asio::use_awaitable;

uint32_t BigEndian32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

std::string ValueOf(const std::vector<std::pair<std::string, std::string>>& parameters, std::string_view name) {
  for (const auto& [key, value] : parameters) {
    if (key == name) return value;
  }
  return std::string();
}

}  // namespace

FakePostgres::FakePostgres()
    : acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, Accept(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

FakePostgres::~FakePostgres() {
  // Closing the acceptor and every socket ends each coroutine; run() then returns by itself.
  asio::post(io_, [this] {
    asio::error_code ignored;
    acceptor_.close(ignored);
    for (auto& weak : all_) {
      if (auto conn = weak.lock()) conn->socket.close(ignored);
    }
  });
  thread_.join();
}

std::string FakePostgres::QueryAnswer() {
  std::string out;
  // RowDescription: one int4 column "?column?" (protocol section 55.7).
  size_t at = pgwire::BeginMessage(out, 'T');
  pgwire::AppendInt16(out, 1);
  pgwire::AppendCString(out, "?column?");
  pgwire::AppendInt32(out, 0);   // table oid
  pgwire::AppendInt16(out, 0);   // attribute number
  pgwire::AppendInt32(out, 23);  // int4
  pgwire::AppendInt16(out, 4);
  pgwire::AppendInt32(out, -1);
  pgwire::AppendInt16(out, 0);   // text format
  pgwire::FinishMessage(out, at);
  at = pgwire::BeginMessage(out, 'D');
  pgwire::AppendInt16(out, 1);
  pgwire::AppendInt32(out, 1);
  out.append("1");
  pgwire::FinishMessage(out, at);
  at = pgwire::BeginMessage(out, 'C');
  pgwire::AppendCString(out, "SELECT 1");
  pgwire::FinishMessage(out, at);
  pgwire::AppendReadyForQuery(out, 'I');
  return out;
}

asio::awaitable<void> FakePostgres::Accept() {
  for (;;) {
    asio::error_code ec;
    asio::ip::tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;  // closed by the destructor
    auto conn = std::make_shared<Connection>(std::move(socket));
    all_.push_back(conn);
    asio::co_spawn(io_, Serve(std::move(conn)), asio::detached);
  }
}

asio::awaitable<void> FakePostgres::Serve(std::shared_ptr<Connection> conn) {
  asio::ip::tcp::socket& socket = conn->socket;
  try {
    // The untyped first packets: SSLRequest (declined), CancelRequest, then the StartupMessage.
    std::optional<pgwire::StartupPacket> startup;
    while (!startup) {
      std::string packet(4, '\0');
      co_await asio::async_read(socket, asio::buffer(packet), use_awaitable);
      const uint32_t length = BigEndian32(packet.data());
      if (length < 8 || length > 10000) co_return;
      packet.resize(length);
      co_await asio::async_read(socket, asio::buffer(packet.data() + 4, length - 4), use_awaitable);
      size_t consumed = 0;
      auto decoded = pgwire::DecodeStartupPacket(packet, &consumed);
      if (!decoded.ok() || !decoded->has_value()) co_return;
      switch ((*decoded)->kind) {
        case pgwire::StartupPacket::Kind::kSslRequest:
        case pgwire::StartupPacket::Kind::kGssEncRequest:
          co_await asio::async_write(socket, asio::buffer("N", 1), use_awaitable);
          break;
        case pgwire::StartupPacket::Kind::kCancelRequest: {
          const int32_t pid = (*decoded)->cancel_pid;
          const uint32_t key = (*decoded)->cancel_key;
          std::shared_ptr<Connection> target;
          Record([&] {
            cancels_.emplace_back(pid, key);
            const size_t index = static_cast<size_t>(pid - kFirstPid);
            if (key == kBackendKey && index < connections_.size()) target = connections_[index];
          });
          // The backend running the statement answers it as cancelled; this connection gets no
          // answer and is closed (protocol section 55.2.7).
          if (target && std::exchange(target->sleeping, false) && target->socket.is_open()) {
            std::string cancelled;
            pgwire::AppendErrorResponse(cancelled, "ERROR", "57014", "canceling statement due to user request");
            pgwire::AppendReadyForQuery(cancelled, 'I');
            asio::error_code ignored;
            asio::write(target->socket, asio::buffer(cancelled), ignored);
          }
          co_return;
        }
        case pgwire::StartupPacket::Kind::kStartup:
          startup = std::move(**decoded);
          break;
      }
    }
    int32_t pid = 0;
    Record([&] {
      pid = kFirstPid + static_cast<int32_t>(connections_.size());
      conn->startup = startup->parameters;
      conn->logged_in = true;
      connections_.push_back(conn);
    });
    std::string out;
    pgwire::AppendAuthenticationOk(out);
    pgwire::AppendParameterStatus(out, "application_name", ValueOf(startup->parameters, "application_name"));
    pgwire::AppendParameterStatus(out, "client_encoding", "UTF8");
    pgwire::AppendParameterStatus(out, "DateStyle", "ISO, MDY");
    pgwire::AppendParameterStatus(out, "integer_datetimes", "on");
    pgwire::AppendParameterStatus(out, "is_superuser", "off");
    pgwire::AppendParameterStatus(out, "server_encoding", "UTF8");
    pgwire::AppendParameterStatus(out, "server_version", "15.4");
    pgwire::AppendParameterStatus(out, "session_authorization", ValueOf(startup->parameters, "user"));
    pgwire::AppendParameterStatus(out, "standard_conforming_strings", "on");
    pgwire::AppendParameterStatus(out, "TimeZone", "UTC");
    pgwire::AppendBackendKeyData(out, pid, kBackendKey);
    pgwire::AppendReadyForQuery(out, 'I');
    co_await asio::async_write(socket, asio::buffer(out), use_awaitable);

    for (;;) {
      char header[5];
      co_await asio::async_read(socket, asio::buffer(header), use_awaitable);
      const uint32_t length = BigEndian32(header + 1);
      if (length < 4 || length > (1u << 20)) break;
      std::string body(length - 4, '\0');
      co_await asio::async_read(socket, asio::buffer(body), use_awaitable);
      if (header[0] == 'Q') {
        std::string text = body.substr(0, body.find('\0'));
        const bool runs_on = absl::StartsWith(text, "SELECT pg_sleep");
        Record([&] { queries_.push_back(text); });
        if (runs_on) {
          conn->sleeping = true;
          continue;
        }
        std::string answer;
        auto complete = [&answer](std::string_view tag) {
          const size_t at = pgwire::BeginMessage(answer, 'C');
          pgwire::AppendCString(answer, tag);
          pgwire::FinishMessage(answer, at);
        };
        if (conn->status == 'E' && text != "COMMIT" && text != "ROLLBACK") {
          pgwire::AppendErrorResponse(answer, "ERROR", "25P02",
                                      "current transaction is aborted, commands ignored until end of transaction block");
        } else if (absl::StrContains(text, "pg_catalog.int4div(1, 0)")) {
          pgwire::AppendErrorResponse(answer, "ERROR", "22012", "division by zero");
          if (conn->status == 'T') conn->status = 'E';
        } else if (text == "BEGIN") {
          complete("BEGIN");
          conn->status = 'T';
        } else if (text == "COMMIT" || text == "ROLLBACK") {
          complete(conn->status == 'T' && text == "COMMIT" ? "COMMIT" : "ROLLBACK");
          conn->status = 'I';
        } else {
          answer = QueryAnswer();
          answer.resize(answer.size() - 6);  // its ReadyForQuery: the status is this connection's
        }
        pgwire::AppendReadyForQuery(answer, conn->status);
        co_await asio::async_write(socket, asio::buffer(answer), use_awaitable);
      } else if (conn->skipping && header[0] != 'S') {
        continue;  // after an error in an extended batch: everything up to the Sync is discarded
      } else if (header[0] == 'P' || header[0] == 'B' || header[0] == 'E') {
        // Extended protocol, the unnamed statement only: Parse is recorded and answered, a Bind
        // of the failing statement fails as planning would, an Execute completes with no rows.
        std::string answer;
        size_t at = 0;
        if (header[0] == 'P') {
          const size_t name_end = body.find('\0');
          conn->parsed = body.substr(name_end + 1, body.find('\0', name_end + 1) - name_end - 1);
          Record([&] { parses_.push_back(conn->parsed); });
          at = pgwire::BeginMessage(answer, '1');
        } else if (header[0] == 'B' && absl::StrContains(conn->parsed, "pg_catalog.int4div(1, 0)")) {
          pgwire::AppendErrorResponse(answer, "ERROR", "22012", "division by zero");
          conn->skipping = true;
          if (conn->status == 'T') conn->status = 'E';
        } else if (header[0] == 'B') {
          at = pgwire::BeginMessage(answer, '2');
        } else {
          at = pgwire::BeginMessage(answer, 'C');
          pgwire::AppendCString(answer, "SELECT 0");
        }
        if (!conn->skipping) pgwire::FinishMessage(answer, at);
        co_await asio::async_write(socket, asio::buffer(answer), use_awaitable);
      } else if (header[0] == 'S') {
        Record([&] { ++syncs_; });
        conn->skipping = false;
        std::string ready;
        pgwire::AppendReadyForQuery(ready, conn->status);
        co_await asio::async_write(socket, asio::buffer(ready), use_awaitable);
      } else if (header[0] == 'X') {
        Record([&] { conn->terminated = true; });
        break;
      } else {
        break;  // nothing else is scripted: end the connection as a confused server would
      }
    }
  } catch (const std::system_error&) {
    // The agent closed the connection (or the test tore the server down).
  }
  asio::error_code ignored;
  socket.close(ignored);
  Record([&] { conn->closed = true; });
}

void FakePostgres::TerminateAll() {
  asio::post(io_, [this] {
    std::string fatal;
    pgwire::AppendErrorResponse(fatal, "FATAL", "57P01", "terminating connection due to administrator command");
    absl::MutexLock lock(&mu_);
    for (auto& conn : connections_) {
      if (conn->closed) continue;
      asio::error_code ignored;
      asio::write(conn->socket, asio::buffer(fatal), ignored);
      conn->socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      conn->socket.close(ignored);
    }
  });
}

void FakePostgres::Record(const std::function<void()>& change) {
  absl::MutexLock lock(&mu_);
  change();
}

bool FakePostgres::WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

std::vector<std::pair<std::string, std::string>> FakePostgres::StartupParameters(size_t index,
                                                                                 absl::Duration timeout) {
  std::vector<std::pair<std::string, std::string>> parameters;
  WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (connections_.size() <= index) return false;
    parameters = connections_[index]->startup;
    return true;
  }, timeout);
  return parameters;
}

std::vector<std::string> FakePostgres::Queries() {
  absl::MutexLock lock(&mu_);
  return queries_;
}

std::vector<std::string> FakePostgres::Parses() {
  absl::MutexLock lock(&mu_);
  return parses_;
}

bool FakePostgres::WaitForQueries(size_t count, absl::Duration timeout) {
  return WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return queries_.size() >= count; }, timeout);
}

size_t FakePostgres::Syncs() {
  absl::MutexLock lock(&mu_);
  return syncs_;
}

bool FakePostgres::WaitForSyncs(size_t count, absl::Duration timeout) {
  return WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return syncs_ >= count; }, timeout);
}

bool FakePostgres::WaitUntilAllClosed(absl::Duration timeout) {
  return WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (const auto& conn : connections_) {
      if (!conn->closed) return false;
    }
    return true;
  }, timeout);
}

bool FakePostgres::terminated_cleanly(size_t index) {
  absl::MutexLock lock(&mu_);
  return index < connections_.size() && connections_[index]->terminated;
}

bool FakePostgres::WaitForCancels(size_t count, absl::Duration timeout) {
  return WaitFor([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return cancels_.size() >= count; }, timeout);
}

std::vector<std::pair<int32_t, uint32_t>> FakePostgres::Cancels() {
  absl::MutexLock lock(&mu_);
  return cancels_;
}

}  // namespace pgward::agent::testing

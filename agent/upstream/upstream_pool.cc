// Idle upstream connections per (connection, target, credential, principal, policy, startup
// parameters): keying, the DISCARD ALL reset, liveness checks and bounds (see upstream_pool.h).
#include "agent/upstream/upstream_pool.h"

#include <openssl/sha.h>
#include <sys/socket.h>

#include <asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/upstream/pinned_settings.h"
#include "common/pgwire/message_reader.h"
#include "common/pgwire/messages.h"
#include "common/util/log.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace pgward::agent {
namespace {

using namespace asio::experimental::awaitable_operators;

// Large enough for a whole TLS record (16 KiB of plaintext): after a read nothing of the record
// stays inside OpenSSL, so "ReadyForQuery was the last byte read" is a statement about the socket.
constexpr size_t kReadChunk = 17 * 1024;

// Length-prefixed, so no two different field lists encode alike.
void AppendField(std::string& out, std::string_view field) {
  absl::StrAppend(&out, field.size(), ":", absl::string_view(field.data(), field.size()), ";");
}

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// Deterministic: map fields in a fixed order, so equal policies give equal bytes.
std::string DeterministicBytes(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream raw(&out);
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

// Reads the answer to one agent Query (see RunResetQuery).
class ResetHandler : public pgwire::MessageHandler {
 public:
  ResetHandler(UpstreamConnection& conn, std::string_view tag) : conn_(conn), watch_(conn.parameters), tag_(tag) {}

  bool done() const { return done_; }

  absl::Status OnMessage(const pgwire::MessageView& msg) override {
    if (done_) return absl::FailedPreconditionError("bytes after ReadyForQuery");
    switch (msg.type) {
      case 'C': {
        auto tag = pgwire::DecodeCommandComplete(msg.body);
        if (!tag.ok()) return tag.status();
        if (completed_ || *tag != tag_) {
          return absl::FailedPreconditionError(absl::StrCat("unexpected CommandComplete ", AbslView(*tag)));
        }
        completed_ = true;
        return absl::OkStatus();
      }
      case 'S': {
        auto parameter = pgwire::DecodeParameterStatus(msg.body);
        if (!parameter.ok()) return parameter.status();
        if (auto change = watch_.Check(parameter->first, parameter->second)) {
          return absl::FailedPreconditionError(absl::StrCat("reset reported a changed ", AbslView(parameter->first)));
        }
        Record(parameter->first, parameter->second);
        return absl::OkStatus();
      }
      case 'N':  // a notice (e.g. a warning from the reset) changes nothing
      case 'A':  // a notification queued before DISCARD ALL's UNLISTEN: nobody to deliver it to
        return absl::OkStatus();
      case 'Z': {
        auto ready = pgwire::DecodeReadyForQuery(msg.body);
        if (!ready.ok()) return ready.status();
        if (!completed_ || *ready != 'I') {
          return absl::FailedPreconditionError("ReadyForQuery without the reset completing idle");
        }
        done_ = true;
        return absl::OkStatus();
      }
      case 'E': {
        auto fields = pgwire::DecodeErrorOrNotice(msg.body);
        if (!fields.ok()) return fields.status();
        return absl::FailedPreconditionError(absl::StrCat("server error ", AbslView(fields->sqlstate), ": ",
                                                          AbslView(fields->message)));
      }
      default:
        return absl::FailedPreconditionError(absl::StrCat(
            "unexpected ", AbslView(pgwire::TypeName(pgwire::Direction::kBackend, msg.type))));
    }
  }
  absl::Status OnStreamedHeader(char type, uint32_t, std::string_view) override {
    return absl::FailedPreconditionError(
        absl::StrCat("unexpected ", AbslView(pgwire::TypeName(pgwire::Direction::kBackend, type))));
  }
  absl::Status OnStreamedBody(std::string_view, bool) override {
    return absl::FailedPreconditionError("unexpected streamed message");
  }

 private:
  void Record(std::string_view name, std::string_view value) {
    for (auto& [n, v] : conn_.parameters) {
      if (n == name) {
        v = std::string(value);
        return;
      }
    }
    conn_.parameters.emplace_back(std::string(name), std::string(value));
  }

  UpstreamConnection& conn_;
  const ParameterWatch watch_;
  const std::string tag_;
  bool completed_ = false;
  bool done_ = false;
};

asio::awaitable<absl::Status> Exchange(UpstreamConnection& conn, std::string sql, std::string_view tag) {
  std::string query;
  pgwire::AppendQuery(query, sql);
  if (auto ec = co_await conn.stream->TryWriteAll(asio::buffer(query))) {
    co_return absl::UnavailableError(absl::StrCat("write: ", ec.message()));
  }
  ResetHandler handler(conn, tag);
  pgwire::MessageReader reader(pgwire::Direction::kBackend, 1 << 20);
  std::unique_ptr<char[]> buffer(new char[kReadChunk]);
  while (!handler.done()) {
    auto [ec, n] = co_await conn.stream->TryReadSome(asio::buffer(buffer.get(), kReadChunk));
    if (ec) co_return absl::UnavailableError(absl::StrCat("read: ", ec.message()));
    absl::Status status = reader.Feed(std::string_view(buffer.get(), n), handler);
    if (!status.ok()) co_return status;
  }
  if (!reader.AtMessageBoundary()) co_return absl::FailedPreconditionError("bytes after ReadyForQuery");
  co_return absl::OkStatus();
}

// True when the server has neither sent anything nor closed: an idle backend says nothing
// until asked, so any byte (a FATAL from pg_terminate_backend, a TLS alert) or EOF means the
// connection is no longer a clean idle session. MSG_PEEK leaves the bytes alone.
bool LooksIdleAndOpen(UpstreamConnection& conn) {
  if (!conn.stream || !conn.stream->socket().is_open()) return false;
  char byte;
  const ssize_t n = ::recv(conn.stream->socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

absl::StatusOr<std::string> UpstreamPoolKey(const pgward::v1::SessionGrant& grant, std::string_view password) {
  pgward::v1::SessionGrant without_session = grant;
  without_session.clear_session_id();
  auto parameters = UpstreamStartupParameters(without_session);
  if (!parameters.ok()) return parameters.status();

  std::string material = "pgward-upstream-pool-v1;";
  AppendField(material, grant.connection());
  pgward::v1::UpstreamTarget target = grant.target();
  target.clear_password_value();  // entered as its digest below, via the resolved password
  AppendField(material, DeterministicBytes(target));
  AppendField(material, Sha256(password));
  AppendField(material, grant.principal());
  AppendField(material, grant.issuer());
  AppendField(material, std::to_string(grant.groups_size()));
  for (const std::string& group : grant.groups()) AppendField(material, group);
  AppendField(material, Sha256(DeterministicBytes(grant.policy())));
  AppendField(material, std::to_string(parameters->size()));
  for (const auto& [name, value] : *parameters) {
    AppendField(material, name);
    AppendField(material, value);
  }
  return absl::BytesToHexString(Sha256(material));
}

asio::awaitable<absl::Status> RunResetQuery(UpstreamConnection& conn, std::string_view sql, std::string_view tag,
                                            std::chrono::milliseconds timeout) {
  if (!conn.stream) co_return absl::FailedPreconditionError("no connection");
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  try {
    auto result = co_await (Exchange(conn, std::string(sql), tag) || timer.async_wait(asio::use_awaitable));
    if (result.index() == 1) co_return absl::DeadlineExceededError("no answer in time");
    co_return std::get<0>(result);
  } catch (const std::exception& e) {
    co_return absl::UnavailableError(e.what());
  }
}

void CloseUpstreamConnection(UpstreamConnection& conn) {
  if (!conn.stream) return;
  std::string terminate;
  pgwire::AppendTerminate(terminate);
  asio::error_code ignored;
  if (conn.stream->socket().is_open()) conn.stream->WriteNow(asio::buffer(terminate), ignored);
  conn.stream->Close();
  conn.stream.reset();
}

UpstreamPool::UpstreamPool(UpstreamPoolOptions options, Clock now)
    : options_(options), now_(now ? std::move(now) : [] { return std::chrono::steady_clock::now(); }) {}

UpstreamPool::~UpstreamPool() {
  *alive_ = false;
  absl::MutexLock lock(&mu_);
  for (auto& [key, list] : idle_) {
    for (Idle& idle : list) CloseUpstreamConnection(idle.conn);
  }
  idle_.clear();
  total_ = 0;
}

asio::awaitable<std::optional<UpstreamConnection>> UpstreamPool::Acquire(const std::string& key,
                                                                        std::string_view session_id) {
  if (!options_.enabled) co_return std::nullopt;
  while (std::optional<UpstreamConnection> conn = TakeIdle(key)) {
    if (!LooksIdleAndOpen(*conn)) {
      Log(LogLevel::kInfo, "pool", "closed an idle upstream connection the server had ended (pid ",
          conn->backend_pid, ")");
      CloseUpstreamConnection(*conn);
      continue;
    }
    absl::Status set = co_await RunResetQuery(
        *conn, SessionIdSetting(session_id), "SET", options_.reset_timeout);
    if (!set.ok()) {
      Log(LogLevel::kWarn, "pool", "closed an idle upstream connection (pid ", conn->backend_pid,
          ") that refused the session's settings: ", set.message());
      CloseUpstreamConnection(*conn);
      continue;
    }
    co_return conn;
  }
  co_return std::nullopt;
}

asio::awaitable<void> UpstreamPool::Release(std::string key, UpstreamConnection conn) {
  if (!options_.enabled) {
    CloseUpstreamConnection(conn);
    co_return;
  }
  // DISCARD ALL: RESET ALL (back to the login's session defaults, SET ROLE and SESSION
  // AUTHORIZATION included), DEALLOCATE ALL, CLOSE ALL, UNLISTEN *, pg_advisory_unlock_all(),
  // DISCARD PLANS, DISCARD TEMP, DISCARD SEQUENCES (PostgreSQL docs, DISCARD).
  absl::Status reset = co_await RunResetQuery(conn, "DISCARD ALL", "DISCARD ALL", options_.reset_timeout);
  if (!reset.ok()) {
    Log(LogLevel::kWarn, "pool", "upstream connection (pid ", conn.backend_pid, ") not kept: reset failed: ",
        reset.message());
    CloseUpstreamConnection(conn);
    co_return;
  }
  Put(key, std::move(conn));
}

bool UpstreamPool::Put(const std::string& key, UpstreamConnection conn) {
  std::vector<UpstreamConnection> closing;
  bool kept = false;
  {
    absl::MutexLock lock(&mu_);
    TakeExpiredLocked(closing);
    std::deque<Idle>& list = idle_[key];
    if (!options_.enabled || options_.max_idle_total == 0 || list.size() >= options_.max_idle_per_key) {
      closing.push_back(std::move(conn));
      if (list.empty()) idle_.erase(key);
    } else {
      if (total_ >= options_.max_idle_total) {
        // Make room: close the connection idle the longest, whatever its key.
        auto oldest = idle_.end();
        for (auto it = idle_.begin(); it != idle_.end(); ++it) {
          if (it->second.empty()) continue;
          if (oldest == idle_.end() || it->second.front().since < oldest->second.front().since) oldest = it;
        }
        if (oldest != idle_.end()) {
          closing.push_back(std::move(oldest->second.front().conn));
          oldest->second.pop_front();
          --total_;
          if (oldest->second.empty() && oldest->first != key) idle_.erase(oldest);
        }
      }
      idle_[key].push_back(Idle{std::move(conn), now_()});
      ++total_;
      kept = true;
    }
  }
  for (UpstreamConnection& c : closing) CloseUpstreamConnection(c);
  return kept;
}

std::optional<UpstreamConnection> UpstreamPool::TakeIdle(const std::string& key) {
  std::vector<UpstreamConnection> closing;
  std::optional<UpstreamConnection> taken;
  {
    absl::MutexLock lock(&mu_);
    TakeExpiredLocked(closing);
    auto it = idle_.find(key);
    if (it != idle_.end() && !it->second.empty()) {
      taken = std::move(it->second.back().conn);
      it->second.pop_back();
      --total_;
      if (it->second.empty()) idle_.erase(it);
    }
  }
  for (UpstreamConnection& c : closing) CloseUpstreamConnection(c);
  return taken;
}

void UpstreamPool::CloseExpired() {
  std::vector<UpstreamConnection> closing;
  {
    absl::MutexLock lock(&mu_);
    TakeExpiredLocked(closing);
  }
  for (UpstreamConnection& c : closing) CloseUpstreamConnection(c);
}

void UpstreamPool::TakeExpiredLocked(std::vector<UpstreamConnection>& closing) {
  const auto cutoff = now_() - options_.idle_timeout;
  for (auto it = idle_.begin(); it != idle_.end();) {
    std::deque<Idle>& list = it->second;
    while (!list.empty() && list.front().since <= cutoff) {
      closing.push_back(std::move(list.front().conn));
      list.pop_front();
      --total_;
    }
    if (list.empty()) {
      idle_.erase(it++);
    } else {
      ++it;
    }
  }
}

void UpstreamPool::StartSweeper(asio::any_io_executor executor) {
  if (!options_.enabled) return;
  const auto period = std::max<std::chrono::milliseconds>(std::chrono::milliseconds(100), options_.idle_timeout / 4);
  asio::co_spawn(
      executor,
      [this, alive = alive_, period]() -> asio::awaitable<void> {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        for (;;) {
          timer.expires_after(period);
          co_await timer.async_wait(asio::use_awaitable);
          if (!*alive) co_return;
          CloseExpired();
        }
      },
      asio::detached);
}

size_t UpstreamPool::IdleCount() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

size_t UpstreamPool::IdleCount(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = idle_.find(key);
  return it == idle_.end() ? 0 : it->second.size();
}

}  // namespace pgward::agent

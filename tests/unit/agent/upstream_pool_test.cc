// The upstream pool: what its key separates, its bounds and idle timeout, and the reset and
// reuse round trips against a scripted server on loopback.
#include <catch2/catch.hpp>

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "agent/upstream/upstream_login.h"
#include "agent/upstream/upstream_pool.h"
#include "common/pgwire/wire_writer.h"

namespace {

using pgward::agent::UpstreamConnection;
using pgward::agent::UpstreamPool;
using pgward::agent::UpstreamPoolKey;
using pgward::agent::UpstreamPoolOptions;

pgward::v1::SessionGrant BaseGrant() {
  pgward::v1::SessionGrant grant;
  grant.set_session_id("s-1");
  grant.set_principal("alice-bot");
  grant.set_issuer("https://idp.example");
  grant.add_groups("analysts");
  grant.set_connection("shop");
  auto* target = grant.mutable_target();
  target->set_host("db.internal");
  target->set_port(5432);
  target->set_database("shop");
  target->set_user("app");
  target->set_sslmode("require");
  target->set_password_ref("agent-env:SHOP");
  grant.mutable_policy()->set_mode(pgward::v1::MODE_READ_WRITE);
  grant.mutable_policy()->set_grant_id("g-1");
  return grant;
}

std::string Key(const pgward::v1::SessionGrant& grant, std::string_view password = "pw") {
  auto key = UpstreamPoolKey(grant, password);
  REQUIRE(key.ok());
  return *key;
}

// A fake connection for bounds tests: never connected, closed on disposal like a real one.
UpstreamConnection FakeConnection(asio::io_context& io, asio::ssl::context& tls, int32_t pid) {
  UpstreamConnection conn;
  conn.stream = std::make_unique<pgward::net::MaybeTlsStream>(asio::ip::tcp::socket(io), tls);
  conn.backend_pid = pid;
  return conn;
}

}  // namespace

TEST_CASE("the pool key is stable for equal grants and ignores only the session id", "[upstream_pool]") {
  pgward::v1::SessionGrant a = BaseGrant();
  pgward::v1::SessionGrant b = BaseGrant();
  b.set_session_id("s-2");
  b.set_client_addr("10.0.0.9");
  CHECK(Key(a) == Key(b));
  CHECK(Key(a).size() == 64);  // hex SHA-256: no secret or name readable in it
  CHECK(Key(a).find("alice") == std::string::npos);
}

TEST_CASE("the pool key separates everything that decides what a connection is and whom it acts for",
          "[upstream_pool]") {
  const std::string base = Key(BaseGrant());
  auto differs = [&](auto change) {
    pgward::v1::SessionGrant grant = BaseGrant();
    change(grant);
    return Key(grant) != base;
  };
  CHECK(differs([](auto& g) { g.set_principal("bob-bot"); }));
  CHECK(differs([](auto& g) { g.set_issuer("https://other-idp.example"); }));
  CHECK(differs([](auto& g) { g.add_groups("operators"); }));
  CHECK(differs([](auto& g) { g.set_connection("shop2"); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_host("db2.internal"); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_port(5433); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_database("other"); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_user("admin"); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_sslmode("verify-full"); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_ca_file("/etc/ca.pem"); }));
  CHECK(differs([](auto& g) { g.mutable_target()->set_password_ref("agent-env:OTHER"); }));
  CHECK(differs([](auto& g) { g.mutable_policy()->set_mode(pgward::v1::MODE_READ_ONLY); }));
  CHECK(differs([](auto& g) { g.mutable_policy()->set_grant_id("g-2"); }));
  CHECK(differs([](auto& g) { (*g.mutable_startup_parameters())["DateStyle"] = "ISO, DMY"; }));
  // A rotated password never reuses a login made with the old one.
  CHECK(Key(BaseGrant(), "new-password") != base);
  // Field boundaries are unambiguous.
  pgward::v1::SessionGrant x = BaseGrant();
  x.set_principal("alice-bot");
  x.set_issuer("https://idp.example");
  pgward::v1::SessionGrant y = BaseGrant();
  y.set_principal("alice-bothttps://idp.example");
  y.set_issuer("");
  CHECK(Key(x) != Key(y));
}

TEST_CASE("the pool key refuses a grant whose startup parameters are refused", "[upstream_pool]") {
  pgward::v1::SessionGrant grant = BaseGrant();
  (*grant.mutable_startup_parameters())["session_authorization"] = "postgres";
  CHECK_FALSE(UpstreamPoolKey(grant, "pw").ok());
}

TEST_CASE("the pool keeps at most max_idle_per_key per key and hands them out newest first", "[upstream_pool]") {
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  UpstreamPoolOptions options;
  options.max_idle_per_key = 2;
  UpstreamPool pool(options);
  CHECK(pool.Put("k", FakeConnection(io, tls, 1)));
  CHECK(pool.Put("k", FakeConnection(io, tls, 2)));
  CHECK_FALSE(pool.Put("k", FakeConnection(io, tls, 3)));  // closed, not kept
  CHECK(pool.IdleCount("k") == 2);
  CHECK(pool.TakeIdle("other") == std::nullopt);  // never handed to another key
  auto first = pool.TakeIdle("k");
  REQUIRE(first);
  CHECK(first->backend_pid == 2);
  CHECK(pool.TakeIdle("k")->backend_pid == 1);
  CHECK(pool.TakeIdle("k") == std::nullopt);
  CHECK(pool.IdleCount() == 0);
}

TEST_CASE("past max_idle_total the longest-idle connection of any key makes room", "[upstream_pool]") {
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  UpstreamPoolOptions options;
  options.max_idle_total = 3;
  UpstreamPool pool(options, [&now] { return now; });
  pool.Put("a", FakeConnection(io, tls, 1));
  now += std::chrono::seconds(1);
  pool.Put("b", FakeConnection(io, tls, 2));
  now += std::chrono::seconds(1);
  pool.Put("a", FakeConnection(io, tls, 3));
  now += std::chrono::seconds(1);
  CHECK(pool.Put("c", FakeConnection(io, tls, 4)));
  CHECK(pool.IdleCount() == 3);
  CHECK(pool.IdleCount("a") == 1);  // pid 1, the oldest, was closed
  CHECK(pool.TakeIdle("a")->backend_pid == 3);
  CHECK(pool.IdleCount("b") == 1);
  CHECK(pool.IdleCount("c") == 1);
}

TEST_CASE("idle connections are closed after idle_timeout", "[upstream_pool]") {
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  UpstreamPoolOptions options;
  options.idle_timeout = std::chrono::seconds(60);
  UpstreamPool pool(options, [&now] { return now; });
  pool.Put("k", FakeConnection(io, tls, 1));
  now += std::chrono::seconds(30);
  pool.Put("k", FakeConnection(io, tls, 2));
  now += std::chrono::seconds(31);
  pool.CloseExpired();
  CHECK(pool.IdleCount("k") == 1);
  CHECK(pool.TakeIdle("k")->backend_pid == 2);
  pool.Put("k", FakeConnection(io, tls, 3));
  now += std::chrono::seconds(61);
  CHECK(pool.TakeIdle("k") == std::nullopt);
  CHECK(pool.IdleCount() == 0);
}

TEST_CASE("a disabled pool or a zero bound keeps nothing", "[upstream_pool]") {
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  UpstreamPoolOptions off;
  off.enabled = false;
  UpstreamPool disabled(off);
  CHECK_FALSE(disabled.Put("k", FakeConnection(io, tls, 1)));
  UpstreamPoolOptions zero;
  zero.max_idle_total = 0;
  UpstreamPool none(zero);
  CHECK_FALSE(none.Put("k", FakeConnection(io, tls, 1)));
  CHECK(none.IdleCount() == 0);
}

namespace {

// A connected loopback pair: the pool's side as an UpstreamConnection, the server's as a socket.
struct Loopback {
  asio::io_context io;
  asio::ssl::context tls{asio::ssl::context::tls_client};
  asio::ip::tcp::socket server{io};
  UpstreamConnection conn;

  Loopback() {
    asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    asio::ip::tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    server = acceptor.accept();
    client.non_blocking(true);
    conn.stream = std::make_unique<pgward::net::MaybeTlsStream>(std::move(client), tls);
    conn.backend_pid = 77;
    conn.parameters = {{"application_name", "pgward:alice-bot"}, {"client_encoding", "UTF8"},
                       {"DateStyle", "ISO, MDY"}};
  }

  void Send(const std::string& bytes) { asio::write(server, asio::buffer(bytes)); }

  absl::Status Reset(std::string_view tag = "DISCARD ALL") {
    std::optional<absl::Status> result;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          result = co_await pgward::agent::RunResetQuery(conn, "DISCARD ALL", tag, std::chrono::seconds(2));
        },
        asio::detached);
    io.run();
    io.restart();
    REQUIRE(result);
    return *result;
  }
};

std::string Message(char type, std::string_view body) {
  std::string out;
  size_t at = pgward::pgwire::BeginMessage(out, type);
  out.append(body);
  pgward::pgwire::FinishMessage(out, at);
  return out;
}
std::string Complete(std::string_view tag) { return Message('C', std::string(tag) + '\0'); }
std::string Ready(char status) { return Message('Z', std::string(1, status)); }
std::string Parameter(std::string_view name, std::string_view value) {
  return Message('S', std::string(name) + '\0' + std::string(value) + '\0');
}

}  // namespace

TEST_CASE("the reset accepts exactly CommandComplete then ReadyForQuery idle", "[upstream_pool]") {
  Loopback lo;
  lo.Send(Parameter("DateStyle", "ISO, DMY") + Complete("DISCARD ALL") + Ready('I'));
  CHECK(lo.Reset().ok());
  // A reported unwatched setting is recorded for the next session's Opened frame.
  CHECK(lo.conn.parameters[2] == std::pair<std::string, std::string>("DateStyle", "ISO, DMY"));
}

TEST_CASE("the reset refuses anything unexpected", "[upstream_pool]") {
  Loopback lo;
  SECTION("a watched setting that changed") {
    lo.Send(Parameter("application_name", "pgward:bob-bot") + Complete("DISCARD ALL") + Ready('I'));
  }
  SECTION("an error") {
    std::string error = Message('E', std::string("SERROR") + '\0' + "C25001" + '\0' + "Mno" + '\0' + '\0');
    lo.Send(error + Ready('E'));
  }
  SECTION("a transaction still open") { lo.Send(Complete("DISCARD ALL") + Ready('T')); }
  SECTION("another command's tag") { lo.Send(Complete("SELECT 1") + Ready('I')); }
  SECTION("bytes after ReadyForQuery") { lo.Send(Complete("DISCARD ALL") + Ready('I') + Ready('I')); }
  SECTION("a row") { lo.Send(Message('D', std::string("\0\0", 2)) + Complete("DISCARD ALL") + Ready('I')); }
  SECTION("the server closing") { lo.server.close(); }
  CHECK_FALSE(lo.Reset().ok());
}

TEST_CASE("the reset gives up when the server does not answer", "[upstream_pool]") {
  Loopback lo;
  std::optional<absl::Status> result;
  asio::co_spawn(
      lo.io,
      [&]() -> asio::awaitable<void> {
        result = co_await pgward::agent::RunResetQuery(lo.conn, "DISCARD ALL", "DISCARD ALL",
                                                       std::chrono::milliseconds(100));
      },
      asio::detached);
  lo.io.run();
  REQUIRE(result);
  CHECK(result->code() == absl::StatusCode::kDeadlineExceeded);
}

TEST_CASE("Acquire skips a pooled connection the server has ended and sets the session id on a live one",
          "[upstream_pool]") {
  Loopback dead;
  Loopback live;
  UpstreamPool pool(UpstreamPoolOptions{});
  dead.conn.backend_pid = 66;
  pool.Put("k", std::move(live.conn));
  pool.Put("k", std::move(dead.conn));  // newest: tried first
  // pg_terminate_backend: a FATAL, then the close.
  dead.Send(Message('E', std::string("SFATAL") + '\0' + "C57P01" + '\0' + "Mterminated" + '\0' + '\0'));
  dead.server.close();

  std::string query_seen;
  std::optional<UpstreamConnection> got;
  asio::io_context& io = live.io;
  // `dead` lives on its own io_context; its socket is only peeked and closed, never awaited.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        char buf[256];
        size_t n = co_await live.server.async_read_some(asio::buffer(buf), asio::use_awaitable);
        query_seen.assign(buf, n);
        std::string answer = Complete("SET") + Ready('I');
        co_await asio::async_write(live.server, asio::buffer(answer), asio::use_awaitable);
      },
      asio::detached);
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { got = co_await pool.Acquire("k", "s-'9"); }, asio::detached);
  io.run();
  REQUIRE(got);
  CHECK(got->backend_pid == 77);
  CHECK(query_seen.find("SET pgward.session_id = 's-''9'") != std::string::npos);
  CHECK(pool.IdleCount() == 0);
}

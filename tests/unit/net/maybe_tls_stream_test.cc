// Tests for MaybeTlsStream over real loopback TCP connections, plaintext and TLS.
#include "common/net/maybe_tls_stream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <catch2/catch.hpp>

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl.hpp>

#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "common/crypto/tls_material.h"
#include "tests/unit/crypto/temp_dir.h"
#include "tests/unit/net/net_test_support.h"

namespace pgward::net {
namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::ip::tcp;
using testing::RunToCompletion;
using Side = asio::ssl::stream_base::handshake_type;

// The two ends of one loopback TCP connection: `client` made by connect(), `server` by accept().
struct TcpPair {
  tcp::socket client;
  tcp::socket server;
};

TcpPair Connect(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server(io);
  acceptor.accept(server);
  return TcpPair{std::move(client), std::move(server)};
}

// A self-signed certificate for localhost / 127.0.0.1 / ::1, and the contexts that use it.
struct Tls {
  Tls() {
    const auto status = crypto::EnsureSelfSignedCertificate(dir.File("cert.pem"), dir.File("key.pem"), "localhost", {});
    REQUIRE(status.ok());
    server.use_certificate_chain_file(dir.File("cert.pem"));
    server.use_private_key_file(dir.File("key.pem"), asio::ssl::context::pem);
    verifying_client.set_verify_mode(asio::ssl::verify_peer);
    verifying_client.load_verify_file(dir.File("cert.pem"));
    trusting_client.set_verify_mode(asio::ssl::verify_none);
  }
  crypto::testing::TempDir dir;
  asio::ssl::context server{asio::ssl::context::tls_server};
  asio::ssl::context verifying_client{asio::ssl::context::tls_client};  // chain checked against the cert
  asio::ssl::context trusting_client{asio::ssl::context::tls_client};   // nothing checked
};

// Both ends as MaybeTlsStreams, optionally after a TLS handshake (client context `client_tls`).
struct StreamPair {
  StreamPair(asio::io_context& io, Tls& tls, asio::ssl::context& client_tls) {
    auto pair = Connect(io);
    client = std::make_unique<MaybeTlsStream>(std::move(pair.client), client_tls);
    server = std::make_unique<MaybeTlsStream>(std::move(pair.server), tls.server);
  }
  std::unique_ptr<MaybeTlsStream> client;
  std::unique_ptr<MaybeTlsStream> server;
};

// Runs both handshakes at once; returns {client's error, server's error}.
std::pair<asio::error_code, asio::error_code> Handshakes(asio::io_context& io, StreamPair& streams) {
  auto both = [&]() -> asio::awaitable<std::pair<asio::error_code, asio::error_code>> {
    auto [client_ec, server_ec] =
        co_await (streams.client->Handshake(Side::client) && streams.server->Handshake(Side::server));
    co_return std::make_pair(client_ec, server_ec);
  };
  return RunToCompletion(io, io.get_executor(), both());
}

std::string RandomBytes(size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string bytes(size, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

// A TLS connection that ended without close_notify. OpenSSL 3 reports it as SSL_ERROR_SSL with
// reason SSL_R_UNEXPECTED_EOF_WHILE_READING, which MaybeTlsStream passes on as an ssl-category
// code; asio's own name for it is stream_truncated. Either is that one condition, nothing else.
bool IsTruncation(const asio::error_code& ec) {
  if (ec == asio::ssl::error::stream_truncated) return true;
  return ec.category() == asio::error::get_ssl_category() &&
         ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

void SetSmallBuffers(tcp::socket& socket) {
  socket.set_option(asio::socket_base::send_buffer_size(64 * 1024));
  socket.set_option(asio::socket_base::receive_buffer_size(64 * 1024));
}

TEST_CASE("maybe tls stream: plaintext WriteAll and ReadExactly round trip", "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  StreamPair streams(io, tls, tls.trusting_client);
  auto exchange = [&]() -> asio::awaitable<std::string> {
    co_await streams.client->WriteAll(asio::buffer(std::string_view("hello, server")));
    std::string got(13, '\0');
    co_await streams.server->ReadExactly(asio::buffer(got));
    co_await streams.server->WriteAll(asio::buffer(got + " and back"));
    std::string back(22, '\0');
    co_await streams.client->ReadExactly(asio::buffer(back));
    co_return back;
  };
  CHECK(RunToCompletion(io, io.get_executor(), exchange()) == "hello, server and back");
  CHECK_FALSE(streams.client->tls());
}

TEST_CASE("maybe tls stream: TLS handshake, then small and 8 MiB payloads to a slow reader, byte for byte",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  const bool use_tls = GENERATE(false, true);
  CAPTURE(use_tls);
  StreamPair streams(io, tls, tls.trusting_client);
  // Small buffers, so the writer fills them long before the reader starts and must wait.
  SetSmallBuffers(streams.client->socket());
  SetSmallBuffers(streams.server->socket());
  if (use_tls) {
    auto [client_ec, server_ec] = Handshakes(io, streams);
    REQUIRE_FALSE(client_ec);
    REQUIRE_FALSE(server_ec);
    CHECK(streams.client->tls());
    CHECK(streams.server->tls());
  }

  const std::string small = "Q\0\0\0\x0dSELECT 1;\0";
  const std::string large = RandomBytes(8 << 20, 42);
  bool writer_done = false;
  bool writer_done_when_reading_started = true;
  auto writer = [&]() -> asio::awaitable<asio::error_code> {
    if (auto ec = co_await streams.client->TryWriteAll(asio::buffer(small))) co_return ec;
    auto ec = co_await streams.client->TryWriteAll(asio::buffer(large));
    writer_done = true;
    co_return ec;
  };
  auto reader = [&]() -> asio::awaitable<std::string> {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    pause.expires_after(50ms);
    co_await pause.async_wait(asio::use_awaitable);
    writer_done_when_reading_started = writer_done;
    std::string received;
    std::string chunk(7919, '\0');  // odd-sized reads, so records and reads do not line up
    int reads = 0;
    while (received.size() < small.size() + large.size()) {
      auto [ec, n] = co_await streams.server->TryReadSome(asio::buffer(chunk));
      if (ec) throw asio::system_error(ec);
      received.append(chunk.data(), n);
      if (++reads % 64 == 0) {  // slower than the writer
        pause.expires_after(1ms);
        co_await pause.async_wait(asio::use_awaitable);
      }
    }
    co_return received;
  };
  auto both = [&]() -> asio::awaitable<std::pair<asio::error_code, std::string>> {
    auto [write_ec, received] = co_await (writer() && reader());
    co_return std::make_pair(write_ec, std::move(received));
  };
  auto [write_ec, received] = RunToCompletion(io, io.get_executor(), both());
  CHECK_FALSE(write_ec);
  // The writer could not finish before the reader began: it waited for the socket.
  CHECK_FALSE(writer_done_when_reading_started);
  REQUIRE(received.size() == small.size() + large.size());
  const bool small_intact = received.compare(0, small.size(), small) == 0;
  const bool large_intact = received.compare(small.size(), large.size(), large) == 0;
  CHECK(small_intact);
  CHECK(large_intact);
}

TEST_CASE("maybe tls stream: host verification accepts the certificate's names and refuses others",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  struct Case {
    const char* host;
    bool verify_host;
    bool passes;
  };
  const auto c = GENERATE(Case{"localhost", true, true}, Case{"127.0.0.1", true, true},
                          Case{"wrong.example", true, false}, Case{"127.0.0.2", true, false},
                          Case{"::2", true, false},
                          // Without host checking only the chain counts.
                          Case{"wrong.example", false, true});
  CAPTURE(c.host, c.verify_host);
  StreamPair streams(io, tls, tls.verifying_client);
  streams.client->PrepareClientTls(c.host, c.verify_host);
  auto [client_ec, server_ec] = Handshakes(io, streams);
  if (c.passes) {
    CHECK_FALSE(client_ec);
    CHECK_FALSE(server_ec);
    CHECK(streams.client->tls());
  } else {
    CHECK(client_ec);
    CHECK(client_ec.category() == asio::error::get_ssl_category());
    CHECK(server_ec);  // the client's alert ends the server's handshake too
    CHECK_FALSE(streams.client->tls());
  }
}

TEST_CASE("maybe tls stream: a client that does not trust the certificate fails the handshake",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  Tls other;  // another self-signed certificate: not the one the server presents
  StreamPair streams(io, tls, other.verifying_client);
  streams.client->PrepareClientTls("localhost", true);
  auto [client_ec, server_ec] = Handshakes(io, streams);
  CHECK(client_ec);
  CHECK(server_ec);
}

TEST_CASE("maybe tls stream: the peer closing mid-stream ends the read with an error, not a hang",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  const bool use_tls = GENERATE(false, true);
  CAPTURE(use_tls);
  StreamPair streams(io, tls, tls.trusting_client);
  if (use_tls) {
    auto [client_ec, server_ec] = Handshakes(io, streams);
    REQUIRE_FALSE(client_ec);
    REQUIRE_FALSE(server_ec);
  }
  auto exchange = [&]() -> asio::awaitable<std::pair<std::string, asio::error_code>> {
    co_await streams.server->WriteAll(asio::buffer(std::string_view("partial")));
    streams.server->Close();  // no close_notify: the TCP connection just ends
    std::string received;
    std::string chunk(64, '\0');
    for (;;) {
      auto [ec, n] = co_await streams.client->TryReadSome(asio::buffer(chunk));
      received.append(chunk.data(), n);
      if (ec) co_return std::make_pair(received, ec);
    }
  };
  auto [received, ec] = RunToCompletion(io, io.get_executor(), exchange());
  CHECK(received == "partial");
  CAPTURE(ec.message());
  if (use_tls) {
    CHECK(IsTruncation(ec));
  } else {
    CHECK(ec == asio::error::eof);
  }
}

TEST_CASE("maybe tls stream: after Close nothing is read from or written to a reused descriptor",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  const bool use_tls = GENERATE(false, true);
  CAPTURE(use_tls);
  StreamPair streams(io, tls, tls.trusting_client);
  if (use_tls) {
    auto [client_ec, server_ec] = Handshakes(io, streams);
    REQUIRE_FALSE(client_ec);
    REQUIRE_FALSE(server_ec);
  }
  const auto old_fd = streams.client->socket().native_handle();
  streams.client->Close();

  // A new connection: connect() takes the lowest free descriptor, the one just closed.
  auto fresh = Connect(io);
  REQUIRE(fresh.client.native_handle() == old_fd);
  asio::write(fresh.server, asio::buffer(std::string_view("for the new connection only")));

  auto poke = [&]() -> asio::awaitable<std::pair<std::pair<asio::error_code, size_t>, asio::error_code>> {
    std::string chunk(64, '\0');
    auto read = co_await streams.client->TryReadSome(asio::buffer(chunk));
    auto write_ec = co_await streams.client->TryWriteAll(asio::buffer(std::string_view("LEAK")));
    co_return std::make_pair(read, write_ec);
  };
  auto [read, write_ec] = RunToCompletion(io, io.get_executor(), poke());
  CHECK(read.first);
  CHECK(read.second == 0);
  CHECK(write_ec);
  asio::error_code ec;
  CHECK(streams.client->WriteNow(asio::buffer(std::string_view("LEAK")), ec) == 0);
  CHECK(ec);

  // The new connection's bytes are all still there, and nothing arrived at its peer.
  std::string got(27, '\0');
  asio::read(fresh.client, asio::buffer(got));
  CHECK(got == "for the new connection only");
  fresh.server.non_blocking(true);
  char byte = 0;
  fresh.server.read_some(asio::buffer(&byte, 1), ec);
  CHECK(ec == asio::error::would_block);
}

TEST_CASE("maybe tls stream: garbage instead of a TLS hello fails the handshake", "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  const auto side = GENERATE(Side::server, Side::client);
  CAPTURE(side == Side::server ? "server" : "client");
  auto pair = Connect(io);
  // The stream under test is on one end; the other end speaks HTTP instead of TLS.
  auto& ours = side == Side::server ? pair.server : pair.client;
  auto& theirs = side == Side::server ? pair.client : pair.server;
  MaybeTlsStream stream(std::move(ours), side == Side::server ? tls.server : tls.trusting_client);
  asio::write(theirs, asio::buffer(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  const auto ec = RunToCompletion(io, io.get_executor(), stream.Handshake(side));
  CHECK(ec);
  CHECK_FALSE(stream.tls());
}

TEST_CASE("maybe tls stream: WriteNow writes what fits now and reports would_block when full",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  StreamPair streams(io, tls, tls.trusting_client);
  SetSmallBuffers(streams.client->socket());
  SetSmallBuffers(streams.server->socket());
  const std::string chunk(64 * 1024, 'x');
  size_t total = 0;
  asio::error_code ec;
  for (int i = 0; i < 1000 && !ec; ++i) total += streams.client->WriteNow(asio::buffer(chunk), ec);
  CHECK(ec == asio::error::would_block);
  CHECK(total > 0);
  CHECK(total < 1000 * chunk.size());
  // What WriteNow reported written is what arrives.
  streams.server->socket().non_blocking(false);
  std::string got(total, '\0');
  asio::read(streams.server->socket(), asio::buffer(got));
  CHECK(got == std::string(total, 'x'));
}

TEST_CASE("maybe tls stream: bytes sent ahead of a TLS upgrade are visible before the handshake",
          "[maybe-tls-stream]") {
  asio::io_context io;
  Tls tls;
  StreamPair streams(io, tls, tls.trusting_client);
  CHECK(streams.server->BufferedPlaintextBytes() == 0);
  asio::write(streams.client->socket(), asio::buffer(std::string_view("early")));
  const auto deadline = std::chrono::steady_clock::now() + testing::kHardLimit;
  while (streams.server->BufferedPlaintextBytes() < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  CHECK(streams.server->BufferedPlaintextBytes() == 5);
}

}  // namespace
}  // namespace pgward::net

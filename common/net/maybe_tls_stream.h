// A TCP socket that may be upgraded to TLS mid-stream, as Postgres's SSLRequest requires.
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>

#include <utility>

#include <string>

namespace pgward::net {

// Postgres negotiates TLS inside the protocol (SSLRequest, then a handshake on the same
// socket), so one object must serve plaintext first and TLS afterwards.
class MaybeTlsStream {
 public:
  using Socket = asio::ip::tcp::socket;

  MaybeTlsStream(Socket socket, asio::ssl::context& tls_context)
      : stream_(std::move(socket), tls_context) {}

  bool tls() const { return tls_; }
  Socket& socket() { return stream_.next_layer(); }
  asio::ssl::stream<Socket>& tls_stream() { return stream_; }

  // Client side: sets SNI and, when `verify_host` is non-empty, RFC 6125 host checking.
  void PrepareClientTls(const std::string& host, bool verify_host) {
    SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str());
    if (verify_host) stream_.set_verify_callback(asio::ssl::host_name_verification(host));
  }

  asio::awaitable<void> Handshake(asio::ssl::stream_base::handshake_type type) {
    co_await stream_.async_handshake(type, asio::use_awaitable);
    tls_ = true;
  }
  // For callers that run the handshake themselves on tls_stream().
  void MarkTlsEstablished() { tls_ = true; }

  template <typename MutableBuffer>
  asio::awaitable<size_t> ReadSome(const MutableBuffer& buffer) {
    if (tls_) co_return co_await stream_.async_read_some(buffer, asio::use_awaitable);
    co_return co_await socket().async_read_some(buffer, asio::use_awaitable);
  }

  template <typename ConstBuffer>
  asio::awaitable<void> WriteAll(const ConstBuffer& buffer) {
    if (tls_) {
      co_await asio::async_write(stream_, buffer, asio::use_awaitable);
    } else {
      co_await asio::async_write(socket(), buffer, asio::use_awaitable);
    }
  }

  // Non-throwing forms for relay loops, where a closed peer is the normal way to end.
  template <typename MutableBuffer>
  asio::awaitable<std::pair<asio::error_code, size_t>> TryReadSome(const MutableBuffer& buffer) {
    constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);
    auto [ec, n] = tls_ ? co_await stream_.async_read_some(buffer, kAsTuple)
                        : co_await socket().async_read_some(buffer, kAsTuple);
    co_return std::make_pair(ec, n);
  }
  template <typename ConstBuffer>
  asio::awaitable<asio::error_code> TryWriteAll(const ConstBuffer& buffer) {
    constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);
    auto [ec, n] = tls_ ? co_await asio::async_write(stream_, buffer, kAsTuple)
                        : co_await asio::async_write(socket(), buffer, kAsTuple);
    co_return ec;
  }

  // Reads exactly `buffer.size()` bytes.
  template <typename MutableBuffer>
  asio::awaitable<void> ReadExactly(const MutableBuffer& buffer) {
    if (tls_) {
      co_await asio::async_read(stream_, buffer, asio::use_awaitable);
    } else {
      co_await asio::async_read(socket(), buffer, asio::use_awaitable);
    }
  }

  // Bytes already read and decrypted by OpenSSL but not yet returned: must be zero before
  // a TLS upgrade (PgBouncer's rule: nothing may arrive ahead of the handshake).
  size_t BufferedPlaintextBytes() { return socket().available(); }

  void Close() {
    asio::error_code ignored;
    socket().shutdown(Socket::shutdown_both, ignored);
    socket().close(ignored);
  }

 private:
  asio::ssl::stream<Socket> stream_;
  bool tls_ = false;
};

}  // namespace pgward::net

#include "common/net/maybe_tls_stream.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <csignal>
#include <mutex>

#include <asio/experimental/as_tuple.hpp>

namespace pgward::net {
namespace {

constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);

// OpenSSL writes the socket with write(2), which raises SIGPIPE on a peer that has gone away;
// asio's own sends use MSG_NOSIGNAL. The error is handled where it is returned, so the
// signal (whose default action ends the process) is ignored once, process-wide.
void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

}  // namespace

MaybeTlsStream::MaybeTlsStream(Socket socket, asio::ssl::context& tls_context)
    : socket_(std::move(socket)), tls_context_(tls_context) {
  asio::error_code ignored;
  socket_.non_blocking(true, ignored);
}

MaybeTlsStream::~MaybeTlsStream() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void MaybeTlsStream::PrepareClientTls(const std::string& host, bool verify_host) {
  if (ssl_ == nullptr) ssl_ = SSL_new(tls_context_.native_handle());
  if (ssl_ == nullptr) return;  // Handshake() reports it
  SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (!verify_host) return;
  // RFC 6125 name checking as libpq's verify-full does it: an address literal must match an
  // IP SAN, a name a DNS SAN (or the CN); the chain itself is checked per the context.
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  }
}

asio::awaitable<asio::error_code> MaybeTlsStream::Handshake(asio::ssl::stream_base::handshake_type type) {
  IgnoreSigpipe();
  if (closed_) co_return asio::error::bad_descriptor;
  if (ssl_ == nullptr) ssl_ = SSL_new(tls_context_.native_handle());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle())) != 1) {
    co_return asio::error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
  }
  // A write that could not finish is retried with the same bytes from a buffer that may have
  // moved (the relay keeps them in a std::string); partial writes let the relay go on reading.
  // An idle connection gives its ~34 KiB of record buffers back (a relay holds many idle ones).
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (type == asio::ssl::stream_base::server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  for (;;) {
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl_);
    if (result == 1) break;
    Want want = Want::kNothing;
    asio::error_code ec = SslFailure(result, want);
    if (want == Want::kNothing) co_return ec;
    if (auto wait_ec = co_await WaitFor(want)) co_return wait_ec;
  }
  tls_ = true;
  co_return asio::error_code{};
}

asio::error_code MaybeTlsStream::SslFailure(int result, Want& want) {
  const int error = SSL_get_error(ssl_, result);
  want = Want::kNothing;
  switch (error) {
    case SSL_ERROR_WANT_READ:
      want = Want::kRead;
      return asio::error::would_block;
    case SSL_ERROR_WANT_WRITE:
      want = Want::kWrite;
      return asio::error::would_block;
    case SSL_ERROR_ZERO_RETURN:
      return asio::error::eof;  // close_notify
    case SSL_ERROR_SYSCALL: {
      const unsigned long queued = ERR_get_error();
      if (queued != 0) return asio::error_code(static_cast<int>(queued), asio::error::get_ssl_category());
      if (errno != 0 && result < 0) return asio::error_code(errno, asio::error::get_system_category());
      // The peer closed the TCP connection without close_notify (OpenSSL 1.1's way).
      return asio::ssl::error::stream_truncated;
    }
    default: {
      const unsigned long queued = ERR_get_error();
      // OpenSSL 3 reports a peer that closed TCP without close_notify this way.
      if (ERR_GET_LIB(queued) == ERR_LIB_SSL && ERR_GET_REASON(queued) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        return asio::ssl::error::stream_truncated;
      }
      return asio::error_code(static_cast<int>(queued != 0 ? queued : static_cast<unsigned long>(error)),
                              asio::error::get_ssl_category());
    }
  }
}

size_t MaybeTlsStream::ReadNow(asio::mutable_buffer buffer, asio::error_code& ec, Want& want) {
  want = Want::kNothing;
  ec.clear();
  if (closed_) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  if (buffer.size() == 0) return 0;
  if (!tls_) {
    const size_t n = socket_.read_some(buffer, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = asio::error::would_block;
      want = Want::kRead;
    }
    return n;
  }
  ERR_clear_error();
  errno = 0;
  const int chunk = static_cast<int>(std::min<size_t>(buffer.size(), 1u << 30));
  const int result = SSL_read(ssl_, buffer.data(), chunk);
  if (result > 0) return static_cast<size_t>(result);
  ec = SslFailure(result, want);
  return 0;
}

size_t MaybeTlsStream::WriteNowWanting(asio::const_buffer buffer, asio::error_code& ec, Want& want) {
  want = Want::kNothing;
  ec.clear();
  if (closed_) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  if (buffer.size() == 0) return 0;
  if (!tls_) {
    const size_t n = socket_.write_some(buffer, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = asio::error::would_block;
      want = Want::kWrite;
    }
    return n;
  }
  ERR_clear_error();
  errno = 0;
  const int chunk = static_cast<int>(std::min<size_t>(buffer.size(), 1u << 30));
  const int result = SSL_write(ssl_, buffer.data(), chunk);
  if (result > 0) return static_cast<size_t>(result);
  ec = SslFailure(result, want);
  return 0;
}

size_t MaybeTlsStream::WriteNow(asio::const_buffer buffer, asio::error_code& ec) {
  Want want;
  return WriteNowWanting(buffer, ec, want);
}

asio::awaitable<asio::error_code> MaybeTlsStream::WaitFor(Want want) {
  auto [ec] = co_await socket_.async_wait(want == Want::kWrite ? Socket::wait_write : Socket::wait_read, kAsTuple);
  co_return ec;
}

asio::awaitable<std::pair<asio::error_code, size_t>> MaybeTlsStream::TryReadSome(asio::mutable_buffer buffer) {
  for (;;) {
    asio::error_code ec;
    Want want;
    const size_t n = ReadNow(buffer, ec, want);
    if (want == Want::kNothing) co_return std::make_pair(ec, n);
    if (auto wait_ec = co_await WaitFor(want)) co_return std::make_pair(wait_ec, size_t{0});
  }
}

asio::awaitable<asio::error_code> MaybeTlsStream::TryWriteAll(asio::const_buffer buffer) {
  while (buffer.size() > 0) {
    asio::error_code ec;
    Want want;
    const size_t n = WriteNowWanting(buffer, ec, want);
    buffer += n;
    if (want != Want::kNothing) {
      if (auto wait_ec = co_await WaitFor(want)) co_return wait_ec;
      continue;
    }
    if (ec) co_return ec;
  }
  co_return asio::error_code{};
}

asio::awaitable<size_t> MaybeTlsStream::ReadSome(asio::mutable_buffer buffer) {
  auto [ec, n] = co_await TryReadSome(buffer);
  if (ec) throw asio::system_error(ec);
  co_return n;
}

asio::awaitable<void> MaybeTlsStream::WriteAll(asio::const_buffer buffer) {
  if (auto ec = co_await TryWriteAll(buffer)) throw asio::system_error(ec);
}

asio::awaitable<void> MaybeTlsStream::ReadExactly(asio::mutable_buffer buffer) {
  while (buffer.size() > 0) {
    auto [ec, n] = co_await TryReadSome(buffer);
    if (ec) throw asio::system_error(ec);
    buffer += n;
  }
}

size_t MaybeTlsStream::BufferedPlaintextBytes() {
  asio::error_code ignored;
  return socket_.available(ignored);
}

void MaybeTlsStream::Close() {
  // OpenSSL holds the descriptor's number: once closed, that number may belong to another
  // connection, so nothing may reach OpenSSL again.
  closed_ = true;
  asio::error_code ignored;
  socket_.shutdown(Socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace pgward::net

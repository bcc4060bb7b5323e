// A TCP socket that may be upgraded to TLS mid-stream, as Postgres's SSLRequest requires.
#pragma once

#include <openssl/ssl.h>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <string>
#include <utility>

namespace pgward::net {

// Postgres negotiates TLS inside the protocol (SSLRequest, then a handshake on the same
// socket), so one object serves plaintext first and TLS afterwards.
//
// Every operation first tries the socket without blocking (a non-blocking socket; OpenSSL
// reads and writes it directly) and waits for readiness only when it must. So a relay that
// writes a reply on the thread that received it finishes the write there, with no thread
// hand-off, in the common case where the socket buffer has room (see SerialExecutor). Not
// thread-safe: one session's executor drives it.
class MaybeTlsStream {
 public:
  using Socket = asio::ip::tcp::socket;

  // `tls_context` is used only if Handshake() is called; it must outlive the stream.
  MaybeTlsStream(Socket socket, asio::ssl::context& tls_context);
  ~MaybeTlsStream();
  MaybeTlsStream(const MaybeTlsStream&) = delete;
  MaybeTlsStream& operator=(const MaybeTlsStream&) = delete;

  bool tls() const { return tls_; }
  Socket& socket() { return socket_; }

  // Client side, before Handshake(client): sets SNI and, when `verify_host` is true, RFC 6125
  // host checking of the peer's certificate (the context decides whether the chain is checked).
  void PrepareClientTls(const std::string& host, bool verify_host);

  // The TLS handshake; a failure (including certificate verification) is returned.
  asio::awaitable<asio::error_code> Handshake(asio::ssl::stream_base::handshake_type type);

  // Throwing forms (asio::system_error) for login code, where any failure ends the attempt.
  asio::awaitable<size_t> ReadSome(asio::mutable_buffer buffer);
  asio::awaitable<void> WriteAll(asio::const_buffer buffer);
  // Reads exactly `buffer.size()` bytes.
  asio::awaitable<void> ReadExactly(asio::mutable_buffer buffer);

  // Non-throwing forms for relay loops, where a closed peer is the normal way to end.
  asio::awaitable<std::pair<asio::error_code, size_t>> TryReadSome(asio::mutable_buffer buffer);
  asio::awaitable<asio::error_code> TryWriteAll(asio::const_buffer buffer);

  // One attempt, never waiting: how many bytes the socket took now (0 with would_block set
  // when it is full). For a last word on a connection that is being closed.
  size_t WriteNow(asio::const_buffer buffer, asio::error_code& ec);

  // The two halves of TryReadSome, for a relay that reads into a per-thread scratch buffer
  // (ScratchBuffer()) instead of keeping a read buffer per session: ReadNow makes one attempt;
  // when it would block, `want` says what to co_await WaitFor() for, after which the caller
  // takes the scratch buffer again (the coroutine may resume on another thread).
  enum class Want { kNothing, kRead, kWrite };
  size_t ReadNow(asio::mutable_buffer buffer, asio::error_code& ec, Want& want);
  asio::awaitable<asio::error_code> WaitFor(Want want);

  // Bytes that arrived but were not read yet: must be zero before a TLS upgrade (PgBouncer's
  // rule, CVE-2021-23222: nothing may arrive ahead of the handshake).
  size_t BufferedPlaintextBytes();

  void Close();

 private:
  size_t WriteNowWanting(asio::const_buffer buffer, asio::error_code& ec, Want& want);
  // Maps an OpenSSL result to an error code and what to wait for.
  asio::error_code SslFailure(int result, Want& want);

  Socket socket_;
  asio::ssl::context& tls_context_;
  SSL* ssl_ = nullptr;
  bool tls_ = false;
  bool closed_ = false;
};

}  // namespace pgward::net

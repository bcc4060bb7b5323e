// A minimal Postgres frontend for tests (no libpq): startup, cleartext-password login with a
// bearer token, raw messages both ways, over a plaintext loopback socket with a read timeout.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "common/pgwire/messages.h"

namespace pgward::gateway::testing {

struct BackendMessage {
  char type = 0;
  std::string body;  // without the 5-byte header
};

// How a login ended: ready for queries, or refused with an ErrorResponse.
struct LoginOutcome {
  bool ready = false;
  std::string sqlstate, message;  // of the ErrorResponse, if refused
  std::map<std::string, std::string> parameters;
  int32_t cancel_pid = 0;
  uint32_t cancel_key = 0;
};

class PgWireClient {
 public:
  PgWireClient() = default;
  ~PgWireClient() { Close(); }
  PgWireClient(const PgWireClient&) = delete;
  PgWireClient& operator=(const PgWireClient&) = delete;

  bool Connect(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    // A gateway that never answers fails the test instead of hanging it.
    timeval timeout{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // The next whole backend message; nothing on end of stream (eof() is then true) or timeout.
  std::optional<BackendMessage> Read() {
    char header[5];
    if (!ReadExactly(header, 5)) return std::nullopt;
    const uint32_t length = (uint32_t(uint8_t(header[1])) << 24) | (uint32_t(uint8_t(header[2])) << 16) |
                            (uint32_t(uint8_t(header[3])) << 8) | uint32_t(uint8_t(header[4]));
    if (length < 4 || length > (1u << 24)) return std::nullopt;
    BackendMessage message;
    message.type = header[0];
    message.body.resize(length - 4);
    if (!ReadExactly(message.body.data(), message.body.size())) return std::nullopt;
    return message;
  }
  bool eof() const { return eof_; }
  // True when the gateway closes the connection (end of stream) before the read timeout.
  bool WaitForClose() {
    while (Read()) {
    }
    return eof_;
  }

  // Startup for `database` (the connection name), then the token as the cleartext password;
  // reads until ReadyForQuery or an ErrorResponse.
  LoginOutcome Login(const std::string& database, const std::string& token) {
    LoginOutcome outcome;
    std::string out;
    pgwire::AppendStartupMessage(out, {{"user", "caller"}, {"database", database}, {"application_name", "relay-test"}});
    if (!Send(out)) return outcome;
    for (;;) {
      auto message = Read();
      if (!message) return outcome;
      switch (message->type) {
        case 'R': {
          auto auth = pgwire::DecodeAuthentication(message->body);
          if (!auth.ok()) return outcome;
          if (auth->code == pgwire::kAuthCleartextPassword) {
            out.clear();
            pgwire::AppendPasswordMessage(out, token);
            if (!Send(out)) return outcome;
          }
          break;
        }
        case 'S': {
          auto parameter = pgwire::DecodeParameterStatus(message->body);
          if (parameter.ok()) outcome.parameters[std::string(parameter->first)] = std::string(parameter->second);
          break;
        }
        case 'K': {
          auto key = pgwire::DecodeBackendKeyData(message->body);
          if (key.ok()) std::tie(outcome.cancel_pid, outcome.cancel_key) = *key;
          break;
        }
        case 'Z':
          outcome.ready = true;
          return outcome;
        case 'E': {
          auto error = pgwire::DecodeErrorOrNotice(message->body);
          if (error.ok()) {
            outcome.sqlstate = std::string(error->sqlstate);
            outcome.message = std::string(error->message);
          }
          return outcome;
        }
        default:
          break;
      }
    }
  }

 private:
  bool ReadExactly(char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = ::recv(fd_, data, size, 0);
      if (n < 0 && errno == EINTR) continue;
      // A reset (the gateway closed with our bytes unread) is an end of stream too.
      if (n == 0 || (n < 0 && errno == ECONNRESET)) eof_ = true;
      if (n <= 0) return false;
      data += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
  bool eof_ = false;
};

// The SQLSTATE and message of an ErrorResponse body.
inline std::pair<std::string, std::string> ErrorOf(const BackendMessage& message) {
  auto error = pgwire::DecodeErrorOrNotice(message.body);
  if (message.type != 'E' || !error.ok()) return {};
  return {std::string(error->sqlstate), std::string(error->message)};
}

}  // namespace pgward::gateway::testing

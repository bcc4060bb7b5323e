#include "gateway/relay/pg_listener.h"

#include <asio/experimental/as_tuple.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/net/serial_executor.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/sqlstate.h"
#include "common/util/log.h"

namespace pgward::gateway {

absl::Status ParseHostPort(const std::string& address, std::string* host, uint16_t* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got '", address, "'"));
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  uint32_t p = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &p) || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", address, "'"));
  }
  *host = h.empty() ? "0.0.0.0" : h;
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

absl::Status ListenOn(asio::ip::tcp::acceptor& acceptor, const std::string& address) {
  std::string host;
  uint16_t port = 0;
  if (absl::Status parsed = ParseHostPort(address, &host, &port); !parsed.ok()) return parsed;
  asio::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("bad listen address '", host, "': ", ec.message()));
  asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status PgListener::Listen(const std::string& address) { return ListenOn(acceptor_, address); }

asio::awaitable<void> PgListener::AcceptLoop() {
  for (;;) {
    // The connection's work runs one piece at a time on whichever thread brings it (socket
    // readiness on asio's threads, session-stream completions on gRPC's): SerialExecutor.
    auto strand = net::SerialExecutor::Make(io_);
    asio::ip::tcp::socket socket(io_);
    auto [ec] = co_await acceptor_.async_accept(socket, asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      Log(LogLevel::kWarn, "listener", "accept failed: ", ec.message());
      continue;
    }
    asio::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (open_connections_.load() >= max_connections_) {
      std::string out;
      pgwire::AppendErrorResponse(out, "FATAL", pgwire::sqlstate::kTooManyConnections,
                                  "pgward: too many connections to the gateway");
      asio::write(socket, asio::buffer(out), ignored);
      continue;
    }
    ++open_connections_;
    auto connection = std::make_shared<FrontendConnection>(std::move(socket), deps_);
    asio::co_spawn(strand, connection->Run(), [this](std::exception_ptr error) {
      --open_connections_;
      if (!error) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        Log(LogLevel::kWarn, "listener", "connection ended with an error: ", e.what());
      }
    });
  }
}

}  // namespace pgward::gateway

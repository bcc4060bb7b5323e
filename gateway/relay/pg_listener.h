// Accepts callers on the gateway's Postgres endpoint and runs one FrontendConnection each.
#pragma once

#include <asio.hpp>

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "gateway/relay/frontend_connection.h"

namespace pgward::gateway {

class PgListener {
 public:
  PgListener(asio::io_context& io, FrontendDeps deps, size_t max_connections)
      : io_(io), acceptor_(io), deps_(std::move(deps)), max_connections_(max_connections) {}

  // HOST:PORT; port 0 picks a free one (see port()).
  absl::Status Listen(const std::string& address);
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  asio::awaitable<void> AcceptLoop();

 private:
  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  FrontendDeps deps_;
  const size_t max_connections_;
  std::atomic<size_t> open_connections_{0};
};

// Splits "host:port", "[v6]:port" or ":port" (all interfaces).
absl::Status ParseHostPort(const std::string& address, std::string* host, uint16_t* port);

// Opens, binds and listens `acceptor` on `address` (ParseHostPort's forms), reusing the address.
absl::Status ListenOn(asio::ip::tcp::acceptor& acceptor, const std::string& address);

}  // namespace pgward::gateway

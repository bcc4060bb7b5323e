// The HTTPS listener of --events-listen: TLS (the gateway's certificate), HTTP/1.1 with
// keep-alive, each request handed to a SecurityEventReceiver on the blocking pool.
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <atomic>
#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "gateway/events/http_request.h"
#include "gateway/events/security_event_receiver.h"

namespace pgward::events {

struct EventsListenerOptions {
  size_t max_connections = 64;
  // From accepting a connection, or from the last response on it, until a whole request
  // (TLS handshake included) has arrived; also bounds writing the response.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(30);
  HttpLimits limits;
};

class EventsListener {
 public:
  EventsListener(asio::io_context& io, asio::ssl::context& tls, asio::thread_pool& blocking_pool,
                 SecurityEventReceiver& receiver, EventsListenerOptions options = {});

  // HOST:PORT; port 0 picks a free one (see port()).
  absl::Status Listen(const std::string& address);
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  asio::awaitable<void> AcceptLoop();

 private:
  asio::awaitable<void> Serve(asio::ip::tcp::socket socket);

  asio::io_context& io_;
  asio::ssl::context& tls_;
  asio::thread_pool& blocking_pool_;
  SecurityEventReceiver& receiver_;
  const EventsListenerOptions options_;
  asio::ip::tcp::acceptor acceptor_;
  std::atomic<size_t> open_connections_{0};
};

}  // namespace pgward::events

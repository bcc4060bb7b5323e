// The HTTPS listener of --events-listen.
#include "gateway/events/events_listener.h"

#include <asio/experimental/as_tuple.hpp>

#include "absl/strings/str_cat.h"
#include "common/util/log.h"
#include "gateway/relay/pg_listener.h"

namespace pgward::events {
namespace {

constexpr auto kAsTuple = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace

EventsListener::EventsListener(asio::io_context& io, asio::ssl::context& tls, asio::thread_pool& blocking_pool,
                               SecurityEventReceiver& receiver, EventsListenerOptions options)
    : io_(io), tls_(tls), blocking_pool_(blocking_pool), receiver_(receiver), options_(options), acceptor_(io) {}

absl::Status EventsListener::Listen(const std::string& address) { return gateway::ListenOn(acceptor_, address); }

asio::awaitable<void> EventsListener::AcceptLoop() {
  for (;;) {
    asio::ip::tcp::socket socket(asio::make_strand(io_));
    auto [ec] = co_await acceptor_.async_accept(socket, kAsTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      Log(LogLevel::kWarn, "events", "accept failed: ", ec.message());
      continue;
    }
    if (open_connections_.load() >= options_.max_connections) {
      // Before TLS, so no answer the transmitter could read: it retries the push later.
      Log(LogLevel::kWarn, "events", "refused a connection: ", options_.max_connections, " already open");
      continue;
    }
    ++open_connections_;
    auto executor = socket.get_executor();
    asio::co_spawn(executor, Serve(std::move(socket)), [this](std::exception_ptr error) {
      --open_connections_;
      if (!error) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        Log(LogLevel::kWarn, "events", "connection ended with an error: ", e.what());
      }
    });
  }
}

asio::awaitable<void> EventsListener::Serve(asio::ip::tcp::socket socket) {
  asio::error_code ignored;
  const auto remote = socket.remote_endpoint(ignored);
  const std::string peer = remote.address().to_string();
  asio::ssl::stream<asio::ip::tcp::socket> stream(std::move(socket), tls_);
  // One deadline at a time: when it passes, the socket closes and whatever waits on it fails.
  asio::steady_timer deadline(stream.get_executor());
  auto arm = [&] {
    deadline.expires_after(options_.request_timeout);
    deadline.async_wait([&stream](const asio::error_code& ec) {
      if (ec) return;
      asio::error_code close_ignored;
      stream.lowest_layer().close(close_ignored);
    });
  };
  arm();
  auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kAsTuple);
  if (handshake_ec) {
    deadline.cancel();
    Log(LogLevel::kDebug, "events", peer, ": TLS handshake failed: ", handshake_ec.message());
    co_return;
  }
  std::string buffer;
  char chunk[4096];
  for (;;) {
    HttpParse parse = ParseHttpRequest(buffer, options_.limits);
    if (parse.result == HttpParse::Result::kNeedMore) {
      auto [read_ec, n] = co_await stream.async_read_some(asio::buffer(chunk), kAsTuple);
      if (read_ec) break;  // the peer closed, or the deadline passed
      buffer.append(chunk, n);
      continue;
    }
    std::string response;
    bool keep_alive = false;
    if (parse.result == HttpParse::Result::kError) {
      Log(LogLevel::kInfo, "events", peer, ": bad HTTP request: ", parse.reason);
      response = HttpResponse(parse.status, "text/plain", parse.reason + "\n", /*keep_alive=*/false);
    } else {
      buffer.erase(0, parse.consumed);
      keep_alive = parse.request.KeepAlive();
      const HttpRequest& request = parse.request;
      response = co_await asio::co_spawn(
          blocking_pool_,
          [this, &request, &peer]() -> asio::awaitable<std::string> { co_return receiver_.Handle(request, peer); },
          asio::use_awaitable);
    }
    auto [write_ec, written] = co_await asio::async_write(stream, asio::buffer(response), kAsTuple);
    if (write_ec || !keep_alive) break;
    arm();  // the next request gets a fresh deadline
  }
  deadline.cancel();
  // A short, bounded close: no TLS shutdown wait for a peer that does not answer it.
  stream.lowest_layer().close(ignored);
}

}  // namespace pgward::events

// Hands completions from gRPC callback threads to an asio coroutine, one at a time.
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/concurrent_channel.hpp>

namespace pgward::net {

// gRPC reactors complete on gRPC's threads; session coroutines run on an asio strand. The
// concurrent channel is asio's thread-safe queue between the two: the reactor Post()s the
// `ok` flag of a finished operation, the coroutine co_awaits Wait(). Capacity 1 suffices
// because each stream keeps at most one read and one write in flight.
class AsyncSignal {
 public:
  explicit AsyncSignal(const asio::any_io_executor& executor) : channel_(executor, 1) {}

  void Post(bool ok) { channel_.try_send(asio::error_code{}, ok); }

  // Returns false when the operation failed or the signal was closed.
  asio::awaitable<bool> Wait() {
    auto [ec, ok] = co_await channel_.async_receive(asio::experimental::as_tuple(asio::use_awaitable));
    co_return !ec && ok;
  }

  void Close() { channel_.close(); }

 private:
  asio::experimental::concurrent_channel<void(asio::error_code, bool)> channel_;
};

// The completions of one gRPC stream (one read and one write in flight, then done), shared by
// its reactor and the coroutine that drives it.
struct StreamCompletions {
  explicit StreamCompletions(const asio::any_io_executor& executor)
      : read_done(executor), write_done(executor), done(executor) {}
  AsyncSignal read_done;
  AsyncSignal write_done;
  AsyncSignal done;
};

}  // namespace pgward::net

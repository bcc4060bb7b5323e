// Helpers for the common/net tests: coroutines run to completion under a hard time limit.
#pragma once

#include <catch2/catch.hpp>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <optional>
#include <utility>

namespace pgward::net::testing {

using namespace std::chrono_literals;

// Long enough for a TSan build on a loaded 2-core machine, short enough that a lost wake-up
// fails the test instead of hanging CI.
inline constexpr auto kHardLimit = 20s;

// Spawns `awaitable` on `executor`, runs `io` on this thread until it finishes (or the hard
// limit passes) and returns its result; rethrows what the coroutine threw. A coroutine that
// has not finished in time fails the test.
template <typename T, typename Executor>
T RunToCompletion(asio::io_context& io, const Executor& executor, asio::awaitable<T> awaitable,
                  std::chrono::steady_clock::duration limit = kHardLimit) {
  std::optional<T> result;
  std::exception_ptr error;
  std::atomic<bool> done{false};
  // A coroutine suspended on an AsyncSignal is no work to the io_context: keep run_one waiting.
  auto guard = asio::make_work_guard(io);
  asio::co_spawn(executor, std::move(awaitable), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) result = std::move(value);
    done.store(true, std::memory_order_release);
    // On a SerialExecutor this may run on another thread (the one holding the executor when
    // the io_context handed over the completion): wake run_one below so it sees `done`.
    asio::post(io, [] {});
  });
  const auto deadline = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < deadline) {
    io.run_one_until(deadline);
  }
  REQUIRE(done.load(std::memory_order_acquire));
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

}  // namespace pgward::net::testing

// Tests for AsyncSignal: completions posted from any thread resume the waiting coroutine.
#include "common/net/async_signal.h"

#include <catch2/catch.hpp>

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <variant>

#include "common/net/serial_executor.h"
#include "tests/unit/net/net_test_support.h"

namespace pgward::net {
namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using testing::RunToCompletion;

// Spawns a coroutine that waits once on `signal`; `result` is set when Wait() returns.
struct OneWait {
  OneWait(const asio::any_io_executor& executor, AsyncSignal& signal) {
    asio::co_spawn(
        executor,
        [this, &signal]() -> asio::awaitable<void> {
          const bool ok = co_await signal.Wait();
          resumed_on = std::this_thread::get_id();
          result.store(ok ? 1 : 0);
        },
        asio::detached);
  }
  std::atomic<int> result{-1};  // -1 while waiting
  std::thread::id resumed_on;
};

TEST_CASE("async signal: a value posted before Wait is returned without suspending", "[async-signal]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  signal.Post(true);
  // The coroutine starts inline on the idle executor; had Wait() suspended, it would need the
  // io_context (which is not run here) to resume.
  OneWait waiter(executor, signal);
  CHECK(waiter.result.load() == 1);

  // The value was consumed: the next Wait() waits for the next Post.
  OneWait second(executor, signal);
  CHECK(second.result.load() == -1);
  signal.Post(false);
  CHECK(second.result.load() == 0);
  io.run_for(testing::kHardLimit);  // lets the coroutines finish
}

TEST_CASE("async signal: Post from another thread resumes the waiter inline there when its executor is idle",
          "[async-signal][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  OneWait waiter(executor, signal);
  REQUIRE(waiter.result.load() == -1);  // suspended in Wait()

  std::thread::id poster_id;
  int result_when_post_returned = -1;
  std::thread poster([&] {
    poster_id = std::this_thread::get_id();
    signal.Post(true);
    result_when_post_returned = waiter.result.load();
  });
  poster.join();
  // Resumed and run to its end within Post(): no thread hand-off.
  CHECK(result_when_post_returned == 1);
  CHECK(waiter.resumed_on == poster_id);
  io.run_for(testing::kHardLimit);
}

TEST_CASE("async signal: on an io_context executor the waiter resumes on the io_context's thread",
          "[async-signal][net-concurrency]") {
  asio::io_context io;
  AsyncSignal signal(io.get_executor());
  std::optional<bool> result;
  std::thread::id resumed_on;
  auto guard = asio::make_work_guard(io);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result = co_await signal.Wait();
        resumed_on = std::this_thread::get_id();
        guard.reset();
      },
      asio::detached);
  std::thread runner([&] { io.run_for(testing::kHardLimit); });
  const auto runner_id = runner.get_id();
  std::this_thread::sleep_for(5ms);  // usually already waiting; either order must work
  signal.Post(true);
  runner.join();
  REQUIRE(result.has_value());
  CHECK(*result);
  CHECK(resumed_on == runner_id);
}

TEST_CASE("async signal: Post(false) is returned as false", "[async-signal]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  signal.Post(false);
  CHECK_FALSE(RunToCompletion(io, executor, signal.Wait()));
}

TEST_CASE("async signal: Close fails the current and every later Wait", "[async-signal][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  OneWait waiter(executor, signal);
  REQUIRE(waiter.result.load() == -1);
  std::thread closer([&] { signal.Close(); });
  closer.join();
  CHECK(waiter.result.load() == 0);

  signal.Post(true);  // ignored once closed
  CHECK_FALSE(RunToCompletion(io, executor, signal.Wait()));
  CHECK_FALSE(RunToCompletion(io, executor, signal.Wait()));
}

TEST_CASE("async signal: Cancel fails only the current Wait", "[async-signal]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  OneWait waiter(executor, signal);
  signal.Cancel();
  CHECK(waiter.result.load() == 0);
  signal.Post(true);
  CHECK(RunToCompletion(io, executor, signal.Wait()));
}

TEST_CASE("async signal: Wait() || timer returns when the timer fires, and the signal still works after",
          "[async-signal]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  auto race = [&]() -> asio::awaitable<std::size_t> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 20ms);
    auto winner = co_await (signal.Wait() || timer.async_wait(asio::use_awaitable));
    co_return winner.index();
  };
  const auto start = std::chrono::steady_clock::now();
  CHECK(RunToCompletion(io, executor, race()) == 1);  // the timer won
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);

  // The cancelled wait left no waiter behind: a later Post reaches a later Wait.
  signal.Post(true);
  CHECK(RunToCompletion(io, executor, signal.Wait()));
}

TEST_CASE("async signal: Wait() || timer returns the posted value and cancels the timer",
          "[async-signal][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  auto race = [&]() -> asio::awaitable<std::optional<bool>> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 60s);
    auto winner = co_await (signal.Wait() || timer.async_wait(asio::use_awaitable));
    if (winner.index() != 0) co_return std::nullopt;
    co_return std::get<0>(winner);
  };
  std::thread poster([&] {
    std::this_thread::sleep_for(5ms);
    signal.Post(true);
  });
  const auto start = std::chrono::steady_clock::now();
  const auto result = RunToCompletion(io, executor, race());
  poster.join();
  REQUIRE(result.has_value());
  CHECK(*result);
  CHECK(std::chrono::steady_clock::now() - start < 30s);  // the 60 s timer was cancelled
}

TEST_CASE("async signal: a Post racing the timer of Wait() || timer: either order completes, with no data race",
          "[async-signal][net-concurrency]") {
  // The timer's completion (on the executor) cancels the signal's wait while another thread's
  // Post completes it (the broker's pairing timeout against an agent's arrival). Whichever
  // wins, the race must return; TSan checks the cancellation against the completion.
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal signal(executor);
  constexpr int kRounds = 1000;
  int timer_won = 0;
  int signal_won = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> go{false};
    // A different head start each round, so the Post lands before, during and after the
    // timer's completion.
    const int delay_spins = (round % 40) * 200;
    std::thread poster([&] {
      while (!go.load()) std::this_thread::yield();
      for (int spin = 0; spin < delay_spins; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
      signal.Post(true);
    });
    auto race = [&]() -> asio::awaitable<std::size_t> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 0ms);
      go.store(true);
      auto winner = co_await (signal.Wait() || timer.async_wait(asio::use_awaitable));
      co_return winner.index();
    };
    const auto winner = RunToCompletion(io, executor, race());
    poster.join();
    if (winner == 0) {
      ++signal_won;
    } else {
      ++timer_won;
    }
    // A Post that came after the cancelled wait is kept: drain it so every round starts alike.
    auto drain = [&]() -> asio::awaitable<bool> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 0ms);
      auto r = co_await (signal.Wait() || timer.async_wait(asio::use_awaitable));
      co_return r.index() == 0;
    };
    RunToCompletion(io, executor, drain());
  }
  CHECK(timer_won + signal_won == kRounds);
  // The varied head start made both orders happen, so both paths were raced.
  CHECK(timer_won > 0);
  CHECK(signal_won > 0);
}

TEST_CASE("async signal: 10,000 Post/Wait round trips between two threads lose no wake-up",
          "[async-signal][net-concurrency]") {
  // Each side's coroutine runs on its own io_context and thread, so every Post comes from
  // the other thread and races the Wait it completes.
  constexpr int kRounds = 10000;
  asio::io_context ping_io;
  asio::io_context pong_io;
  AsyncSignal ping(ping_io.get_executor());  // waited for on pong's side
  AsyncSignal pong(pong_io.get_executor());  // waited for on ping's side
  std::atomic<int> ping_rounds{0};
  std::atomic<int> pong_rounds{0};
  auto ping_guard = asio::make_work_guard(ping_io);
  auto pong_guard = asio::make_work_guard(pong_io);
  // Spawned before either thread runs, so both wait on their own io_context's thread.
  asio::co_spawn(
      pong_io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < kRounds; ++i) {
          if (!co_await ping.Wait()) break;
          pong_rounds.fetch_add(1);
          pong.Post(true);
        }
        pong_guard.reset();
      },
      asio::detached);
  asio::co_spawn(
      ping_io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < kRounds; ++i) {
          ping.Post(true);
          if (!co_await pong.Wait()) break;
          ping_rounds.fetch_add(1);
        }
        ping_guard.reset();
      },
      asio::detached);
  std::thread pong_thread([&] { pong_io.run_for(testing::kHardLimit); });
  ping_io.run_for(testing::kHardLimit);
  pong_thread.join();
  CHECK(ping_rounds.load() == kRounds);
  CHECK(pong_rounds.load() == kRounds);
}

TEST_CASE("async signal: Posts from another thread reach a SerialExecutor coroutine while the executor is busy",
          "[async-signal][net-concurrency]") {
  // A second coroutine keeps the executor busy on the io_context's thread, so Posts from the
  // poster thread find it sometimes idle (resumed inline on the poster) and sometimes running
  // (queued for the io thread). None may be lost.
  constexpr int kRounds = 2000;
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  AsyncSignal request(executor);
  std::atomic<int> acknowledged{0};
  std::atomic<bool> stop{false};
  long noise_steps = 0;  // the executor protects it
  long waiter_steps = 0;
  auto guard = asio::make_work_guard(io);
  asio::co_spawn(
      executor,
      [&]() -> asio::awaitable<void> {
        while (!stop.load()) {
          ++noise_steps;
          co_await asio::post(asio::use_awaitable);
        }
      },
      asio::detached);
  asio::co_spawn(
      executor,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < kRounds; ++i) {
          if (!co_await request.Wait()) break;
          ++waiter_steps;
          ++noise_steps;
          acknowledged.fetch_add(1);
        }
        stop.store(true);
        guard.reset();
      },
      asio::detached);
  std::thread runner([&] { io.run_for(testing::kHardLimit); });
  const auto deadline = std::chrono::steady_clock::now() + testing::kHardLimit;
  for (int i = 0; i < kRounds && std::chrono::steady_clock::now() < deadline; ++i) {
    request.Post(true);
    while (acknowledged.load() <= i && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  }
  stop.store(true);
  runner.join();
  CHECK(acknowledged.load() == kRounds);
  CHECK(waiter_steps == kRounds);
}

}  // namespace
}  // namespace pgward::net

// Tests for SerialExecutor: a strand's guarantee, with work run inline on an idle executor.
#include "common/net/serial_executor.h"

#include <catch2/catch.hpp>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/net/net_test_support.h"

namespace pgward::net {
namespace {

using namespace std::chrono_literals;
using testing::RunToCompletion;

// Occupies `executor` on a thread of its own until the returned promise is set; `busy` is
// ready once the task is running (so work submitted after that is queued behind it).
struct Occupier {
  explicit Occupier(const SerialExecutor& executor) {
    auto started = std::make_shared<std::promise<void>>();
    busy = started->get_future();
    auto release_future = release.get_future().share();
    thread = std::thread([executor, started, release_future] {
      executor.execute([started, release_future] {
        started->set_value();
        release_future.wait();
      });
    });
  }
  ~Occupier() {
    if (thread.joinable()) {
      Release();
    }
  }
  // Lets the task finish and waits until the occupying thread's execute() has returned,
  // which is after it ran everything queued behind it.
  void Release() {
    release.set_value();
    thread.join();
  }
  std::promise<void> release;
  std::future<void> busy;
  std::thread thread;
};

TEST_CASE("serial executor: concurrent submitters never run two tasks at once, each submitter's tasks in order",
          "[serial-executor][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  constexpr int kThreads = 4;
  constexpr int kTasksPerThread = 20000;

  long counter = 0;  // deliberately not atomic: only the executor's exclusion protects it
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::vector<int> last_seen(kThreads, -1);  // per submitter, touched only inside tasks
  int out_of_order = 0;
  std::atomic<bool> go{false};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kTasksPerThread; ++i) {
        executor.execute([&, t, i] {
          if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
          ++counter;
          if (last_seen[t] != i - 1) ++out_of_order;
          last_seen[t] = i;
          inside.fetch_sub(1);
        });
      }
    });
  }
  go.store(true);
  for (auto& thread : threads) thread.join();

  // Every execute() has returned, so nothing can still be queued: the thread that ran the
  // executor drained the queue before letting go.
  CHECK(overlaps.load() == 0);
  CHECK(out_of_order == 0);
  CHECK(counter == static_cast<long>(kThreads) * kTasksPerThread);
  for (int t = 0; t < kThreads; ++t) CHECK(last_seen[t] == kTasksPerThread - 1);
}

TEST_CASE("serial executor: work submitted while another thread runs it is queued, in order, for that thread",
          "[serial-executor][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  Occupier occupier(executor);
  occupier.busy.wait();

  std::vector<int> order;
  std::vector<std::thread::id> ran_on;
  for (int i = 0; i < 1000; ++i) {
    executor.execute([&order, &ran_on, i] {
      order.push_back(i);
      ran_on.push_back(std::this_thread::get_id());
    });
  }
  // Queued, not run here: the executor is busy on the occupier's thread.
  const auto occupier_id = occupier.thread.get_id();
  occupier.Release();

  REQUIRE(order.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(order[i] == i);
  for (const auto& id : ran_on) REQUIRE(id == occupier_id);
}

TEST_CASE("serial executor: an idle executor runs the task inline on the submitting thread", "[serial-executor]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  std::thread::id ran_on;
  bool ran = false;
  executor.execute([&] {
    ran = true;
    ran_on = std::this_thread::get_id();
  });
  CHECK(ran);  // before execute() returned, without running the io_context
  CHECK(ran_on == std::this_thread::get_id());

  // asio::dispatch asks for blocking.possibly: the same.
  bool dispatched = false;
  asio::dispatch(executor, [&] { dispatched = true; });
  CHECK(dispatched);
  CHECK(io.poll() == 0);  // nothing went through the io_context
}

TEST_CASE("serial executor: a task submitted from a running task is queued, not run recursively",
          "[serial-executor]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  std::vector<std::string> events;
  int depth = 0;
  int max_depth = 0;
  auto enter = [&] { max_depth = std::max(max_depth, ++depth); };

  executor.execute([&] {
    enter();
    events.push_back("outer begins");
    executor.execute([&] {
      enter();
      events.push_back("inner");
      executor.execute([&] {
        enter();
        events.push_back("innermost");
        --depth;
      });
      --depth;
    });
    events.push_back("outer ends");
    --depth;
  });

  // Everything ran before the outer execute() returned, one at a time, in submission order.
  CHECK(events == std::vector<std::string>{"outer begins", "outer ends", "inner", "innermost"});
  CHECK(max_depth == 1);
  CHECK(io.poll() == 0);
}

TEST_CASE("serial executor: asio::post does not run inline but on the io_context's thread", "[serial-executor][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  std::atomic<bool> ran{false};
  std::thread::id ran_on;
  asio::post(executor, [&] {
    ran_on = std::this_thread::get_id();
    ran.store(true);
  });
  CHECK_FALSE(ran.load());  // not inline, although the executor is idle

  std::thread runner([&] { io.run(); });
  const auto runner_id = runner.get_id();
  runner.join();
  CHECK(ran.load());
  CHECK(ran_on == runner_id);
}

TEST_CASE("serial executor: posted work reaching a busy executor waits for it, on the thread running it",
          "[serial-executor][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  Occupier occupier(executor);
  occupier.busy.wait();

  std::atomic<bool> ran{false};
  std::thread::id ran_on;
  asio::post(executor, [&] {
    ran_on = std::this_thread::get_id();
    ran.store(true);
  });
  // The io_context hands the task to the executor, which is busy: it is queued, not run.
  std::thread runner([&] { io.run(); });
  runner.join();
  CHECK_FALSE(ran.load());

  const auto occupier_id = occupier.thread.get_id();
  occupier.Release();
  CHECK(ran.load());
  CHECK(ran_on == occupier_id);
}

TEST_CASE("serial executor: coroutines spawned on it run and wait on timers", "[serial-executor]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  auto body = [&]() -> asio::awaitable<int> {
    // The coroutine sees the executor it was spawned on, as an any_io_executor.
    auto current = co_await asio::this_coro::executor;
    const SerialExecutor* serial = current.target<SerialExecutor>();
    if (serial == nullptr || !(*serial == executor)) co_return -1;
    int ticks = 0;
    asio::steady_timer timer(current);
    for (int i = 0; i < 3; ++i) {
      timer.expires_after(1ms);
      co_await timer.async_wait(asio::use_awaitable);
      ++ticks;
    }
    co_return ticks;
  };
  CHECK(RunToCompletion(io, executor, body()) == 3);
}

TEST_CASE("serial executor: two coroutines on one executor never interleave between their suspension points",
          "[serial-executor][net-concurrency]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  long steps = 0;  // not atomic: the executor protects it
  auto worker = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 500; ++i) {
      if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
      ++steps;
      inside.fetch_sub(1);
      co_await asio::post(asio::use_awaitable);  // resumed through the io_context
    }
  };
  std::atomic<int> finished{0};
  for (int c = 0; c < 4; ++c) {
    asio::co_spawn(executor, worker(), [&](std::exception_ptr) { finished.fetch_add(1); });
  }
  // Two threads run the io_context, so resumptions arrive on both at once.
  std::thread other([&] { io.run_for(testing::kHardLimit); });
  io.run_for(testing::kHardLimit);
  other.join();
  CHECK(finished.load() == 4);
  CHECK(overlaps.load() == 0);
  CHECK(steps == 2000);
}

TEST_CASE("serial executor: usable as asio::any_io_executor", "[serial-executor]") {
  asio::io_context io;
  const auto executor = SerialExecutor::Make(io);
  asio::any_io_executor any = executor;

  CHECK(&asio::query(any, asio::execution::context) == &io);
  REQUIRE(any.target<SerialExecutor>() != nullptr);
  CHECK(*any.target<SerialExecutor>() == executor);
  // Copies share the serializer; blocking.never is a different executor value.
  CHECK(SerialExecutor(executor) == executor);
  CHECK(SerialExecutor::Make(io) != executor);
  CHECK(asio::require(executor, asio::execution::blocking.never) != executor);

  bool dispatched = false;
  asio::dispatch(any, [&] { dispatched = true; });
  CHECK(dispatched);
  bool posted = false;
  asio::post(any, [&] { posted = true; });
  CHECK_FALSE(posted);
  CHECK(io.poll() >= 1);
  CHECK(posted);

  // An I/O object built on it completes its handlers through it.
  asio::steady_timer timer(any);
  timer.expires_after(1ms);
  bool fired = false;
  timer.async_wait([&](const asio::error_code& ec) { fired = !ec; });
  io.restart();
  io.run_for(testing::kHardLimit);
  CHECK(fired);
}

TEST_CASE("a task that throws releases the executor and what was queued behind it still runs", "[net]") {
  asio::io_context io;
  const SerialExecutor executor = SerialExecutor::Make(io);
  bool queued_ran = false;
  bool later_ran = false;
  CHECK_THROWS_AS(executor.execute([&] {
    executor.execute([&] { queued_ran = true; });  // queued: the executor is running
    throw std::runtime_error("escaped");
  }),
                  std::runtime_error);
  CHECK_FALSE(queued_ran);
  // Released at once: new work runs inline again.
  executor.execute([&] { later_ran = true; });
  CHECK(later_ran);
  // The queued task was either drained by that inline run or by the restart posted to the
  // io_context; either way it runs, and exactly once.
  io.run_for(200ms);
  CHECK(queued_ran);
}

}  // namespace
}  // namespace pgward::net

// Tests for LargeStackWorker: functions run to completion on one long-lived large-stack thread.
#include "agent/inspect/run_with_stack.h"

#include <pthread.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {
namespace {

// Uses about 1 KiB of stack per level; the optimizer may not turn it into a loop (the buffer
// is read after the call).
int Deep(int n) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(n);
  if (n == 0) return pad[0];
  return Deep(n - 1) + pad[0] - pad[0] + 1;
}

TEST_CASE("a function runs on the requested stack and is waited for", "[run_with_stack]") {
  LargeStackWorker worker(size_t{256} << 20);
  int result = -1;
  // 64 MiB of recursion: far beyond a default 8 MiB thread stack.
  REQUIRE(worker.Run([&] { result = Deep(64 * 1024); }));
  CHECK(result == 64 * 1024);
}

TEST_CASE("an exception stays on the worker thread, which keeps serving", "[run_with_stack]") {
  LargeStackWorker worker(size_t{1} << 20);
  bool finished = false;
  CHECK(worker.Run([&] {
    throw std::runtime_error("boom");
    finished = true;
  }));
  CHECK_FALSE(finished);
  int after = 0;
  REQUIRE(worker.Run([&] { after = 1; }));
  CHECK(after == 1);
}

TEST_CASE("every call runs on the same thread", "[run_with_stack]") {
  LargeStackWorker worker(size_t{1} << 20);
  std::vector<pthread_t> seen(50);
  for (auto& id : seen) REQUIRE(worker.Run([&] { id = pthread_self(); }));
  for (const auto& id : seen) CHECK(pthread_equal(id, seen.front()));
  CHECK_FALSE(pthread_equal(seen.front(), pthread_self()));
}

TEST_CASE("callers on several threads each get their own function run", "[run_with_stack][concurrency]") {
  LargeStackWorker worker(size_t{1} << 20);
  std::vector<int> results(8, 0);
  std::vector<std::thread> callers;
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&, i] {
      for (int k = 0; k < 100; ++k) worker.Run([&] { results[i] += 1; });
    });
  }
  for (auto& t : callers) t.join();
  for (int r : results) CHECK(r == 100);
}

// libpg_query creates a pthread key in every thread that parses; with a thread per long
// statement, about a thousand of them exhausted the process's keys (PTHREAD_KEYS_MAX).
TEST_CASE("thousands of long statements leave the process's pthread keys alone", "[analyzer][run_with_stack]") {
  SqlAnalyzer analyzer(16);
  const std::string padding(5000, 'x');
  for (int i = 0; i < 1200; ++i) {
    auto statements = analyzer.AnalyzeQuery("SELECT " + std::to_string(i) + " /* " + padding + " */");
    REQUIRE(statements.size() == 1);
    REQUIRE(statements[0]->parsed);
  }
  pthread_key_t key;
  REQUIRE(pthread_key_create(&key, nullptr) == 0);
  pthread_key_delete(key);
}

}  // namespace
}  // namespace pgward::inspect

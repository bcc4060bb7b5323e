// Tests for RunWithStack: the function runs to completion on a stack of the requested size.
#include "agent/inspect/run_with_stack.h"

#include <stdexcept>

#include <catch2/catch.hpp>

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
  int result = -1;
  // 64 MiB of recursion: far beyond a default 8 MiB thread stack.
  REQUIRE(RunWithStack(size_t{256} << 20, [&] { result = Deep(64 * 1024); }));
  CHECK(result == 64 * 1024);
}

TEST_CASE("an exception stays on the worker thread", "[run_with_stack]") {
  bool finished = false;
  CHECK(RunWithStack(size_t{1} << 20, [&] {
    throw std::runtime_error("boom");
    finished = true;
  }));
  CHECK_FALSE(finished);
}

}  // namespace
}  // namespace pgward::inspect

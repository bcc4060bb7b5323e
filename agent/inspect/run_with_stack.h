// RunWithStack: runs a function on a new thread with a stack of a given size and waits for it.
// libpg_query and its normalizer recurse once per nesting level of a statement, up to ~450 bytes
// a level, so a long statement can need far more stack than the calling thread has.
#pragma once

#include <cstddef>

#include "absl/functional/function_ref.h"

namespace pgward::inspect {

// Returns false if the thread could not be started (the function did not run). The stack is
// reserved, not committed: only the pages a deep statement touches cost memory, and they are
// returned when the thread ends. An exception from `fn` is swallowed on that thread: callers
// detect an unfinished `fn` themselves (SqlAnalyzer fails closed).
bool RunWithStack(size_t stack_bytes, absl::FunctionRef<void()> fn);

}  // namespace pgward::inspect

// RunWithStack: one POSIX thread per call, joined before returning (std::thread cannot size its stack).
#include "agent/inspect/run_with_stack.h"

#include <pthread.h>

namespace pgward::inspect {
namespace {

void* Trampoline(void* arg) {
  try {
    (*static_cast<absl::FunctionRef<void()>*>(arg))();
  } catch (...) {
    // Nothing may escape a thread; the caller sees that `fn` did not finish its work.
  }
  return nullptr;
}

}  // namespace

bool RunWithStack(size_t stack_bytes, absl::FunctionRef<void()> fn) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_t thread;
  bool started = pthread_attr_setstacksize(&attr, stack_bytes) == 0 &&
                 pthread_create(&thread, &attr, Trampoline, &fn) == 0;
  pthread_attr_destroy(&attr);
  if (started) pthread_join(thread, nullptr);
  return started;
}

}  // namespace pgward::inspect

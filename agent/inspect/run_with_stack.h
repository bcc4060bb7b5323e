// LargeStackWorker: one long-lived thread with a large stack that runs functions for callers.
// libpg_query and its normalizer recurse once per nesting level of a statement, up to ~450 bytes
// a level, so a long statement can need far more stack than the calling thread has.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <cstddef>
#include <mutex>

#include "absl/functional/function_ref.h"

namespace pgward::inspect {

// One thread, started on first use and kept: libpg_query sets up per-thread state (a memory
// context and a pthread key, of which a process has only PTHREAD_KEYS_MAX) in every thread that
// parses, so a thread per call would exhaust the process's pthread keys after about a thousand
// long statements. Callers take turns; each waits for its own function. The stack is reserved,
// not committed: only the pages a deep statement touches cost memory.
//
// std::mutex and std::condition_variable rather than absl::Mutex: the hand-off is a wait on a
// condition, and Debian's uninstrumented absl::Mutex::Await hides that from ThreadSanitizer
// (CI runs this class's tests under TSan), while libstdc++'s go through pthread, which it sees.
class LargeStackWorker {
 public:
  explicit LargeStackWorker(size_t stack_bytes) : stack_bytes_(stack_bytes) {}
  ~LargeStackWorker();
  LargeStackWorker(const LargeStackWorker&) = delete;
  LargeStackWorker& operator=(const LargeStackWorker&) = delete;

  // Runs `fn` on the worker thread and waits for it. Returns false if the thread could not be
  // started (the function did not run). An exception from `fn` is swallowed on the worker:
  // callers detect an unfinished `fn` themselves (SqlAnalyzer fails closed).
  bool Run(absl::FunctionRef<void()> fn);

 private:
  static void* ThreadMain(void* self);
  void Loop();

  const size_t stack_bytes_;
  std::mutex turn_mu_;  // one caller at a time
  std::mutex mu_;       // guards the fields below
  std::condition_variable changed_;
  bool started_ = false;
  bool stopping_ = false;
  absl::FunctionRef<void()>* job_ = nullptr;  // set by Run, cleared by the worker when done
  pthread_t thread_{};
};

}  // namespace pgward::inspect

// LargeStackWorker: a POSIX thread (std::thread cannot size its stack) fed one function at a time.
#include "agent/inspect/run_with_stack.h"

namespace pgward::inspect {

LargeStackWorker::~LargeStackWorker() {
  bool started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    started = started_;
  }
  changed_.notify_all();
  if (started) pthread_join(thread_, nullptr);
}

bool LargeStackWorker::Run(absl::FunctionRef<void()> fn) {
  std::lock_guard<std::mutex> turn(turn_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  if (!started_) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return false;
    started_ = pthread_attr_setstacksize(&attr, stack_bytes_) == 0 &&
               pthread_create(&thread_, &attr, &LargeStackWorker::ThreadMain, this) == 0;
    pthread_attr_destroy(&attr);
    if (!started_) return false;
  }
  job_ = &fn;
  changed_.notify_all();
  changed_.wait(lock, [this] { return job_ == nullptr; });
  return true;
}

void* LargeStackWorker::ThreadMain(void* self) {
  static_cast<LargeStackWorker*>(self)->Loop();
  return nullptr;
}

void LargeStackWorker::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || job_ != nullptr; });
    if (job_ == nullptr) return;  // stopping, nothing left to run
    absl::FunctionRef<void()>* job = job_;
    lock.unlock();
    try {
      (*job)();
    } catch (...) {
      // Nothing may escape a thread; the caller sees that its function did not finish its work.
    }
    lock.lock();
    job_ = nullptr;
    changed_.notify_all();
  }
}

}  // namespace pgward::inspect

// LargeStackWorker: a POSIX thread (std::thread cannot size its stack) fed one function at a time.
#include "agent/inspect/run_with_stack.h"

namespace pgward::inspect {

LargeStackWorker::~LargeStackWorker() {
  bool started;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    started = started_;
  }
  if (started) pthread_join(thread_, nullptr);
}

bool LargeStackWorker::Run(absl::FunctionRef<void()> fn) {
  absl::MutexLock turn(&turn_mu_);
  absl::MutexLock lock(&mu_);
  if (!started_) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return false;
    started_ = pthread_attr_setstacksize(&attr, stack_bytes_) == 0 &&
               pthread_create(&thread_, &attr, &LargeStackWorker::ThreadMain, this) == 0;
    pthread_attr_destroy(&attr);
    if (!started_) return false;
  }
  job_ = &fn;
  mu_.Await(absl::Condition(
      +[](absl::FunctionRef<void()>** job) { return *job == nullptr; }, &job_));
  return true;
}

void* LargeStackWorker::ThreadMain(void* self) {
  static_cast<LargeStackWorker*>(self)->Loop();
  return nullptr;
}

void LargeStackWorker::Loop() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    mu_.Await(absl::Condition(
        +[](LargeStackWorker* w) { return w->stopping_ || w->job_ != nullptr; }, this));
    if (job_ == nullptr) return;  // stopping, nothing left to run
    absl::FunctionRef<void()>* job = job_;
    mu_.Unlock();
    try {
      (*job)();
    } catch (...) {
      // Nothing may escape a thread; the caller sees that its function did not finish its work.
    }
    mu_.Lock();
    job_ = nullptr;
  }
}

}  // namespace pgward::inspect

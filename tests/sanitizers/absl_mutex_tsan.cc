// TSan builds only: tells ThreadSanitizer about absl::Mutex, whose Debian build is not
// instrumented. Without this TSan sees no happens-before edge through any absl::Mutex and
// reports every ABSL_GUARDED_BY member as a race. The functions below interpose the ones in
// libabsl_synchronization.so (a definition in the executable wins over the shared library),
// record release/acquire on the mutex's address and call the real function (dlsym
// RTLD_NEXT). Only the functions pgward calls are wrapped; a missing symbol aborts.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"

namespace {

template <typename Fn>
Fn Real(const char* mangled) {
  void* fn = ::dlsym(RTLD_NEXT, mangled);
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_mutex_tsan: %s not found in Abseil: update the mangled names\n", mangled);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

using Plain = void (*)(absl::Mutex*);
using Try = bool (*)(absl::Mutex*);
using WithCond = void (*)(absl::Mutex*, const absl::Condition&);

// A condition evaluated by Abseil with the mutex held: acquire/release around it.
struct VisibleCondition {
  absl::Mutex* mu;
  const absl::Condition* cond;
  static bool Eval(VisibleCondition* self) {
    __tsan_acquire(self->mu);
    const bool result = self->cond->Eval();
    __tsan_release(self->mu);
    return result;
  }
};

// Abseil's deadlock detection keeps its lock graph (GraphCycles) under an internal spin lock
// TSan cannot see, and gRPC's threads take absl::Mutex all the time: every graph update would
// be reported. It is a debugging aid with no effect on behaviour; TSan checks locking itself.
const bool kDeadlockDetectionOff = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const Plain real = Real<Plain>("_ZN4absl7debian35Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  static const Plain real = Real<Plain>("_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

void Mutex::ReaderLock() {
  static const Plain real = Real<Plain>("_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  static const Plain real = Real<Plain>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::TryLock() {
  static const Try real = Real<Try>("_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::LockWhen(const Condition& cond) {
  static const WithCond real = Real<WithCond>("_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  VisibleCondition visible{this, &cond};
  real(this, Condition(&VisibleCondition::Eval, &visible));
  __tsan_acquire(this);
}

// Await releases the mutex while it waits and holds it again on return. Abseil evaluates the
// condition with the mutex held, but on whichever thread holds it at that moment (the waiter,
// or a thread unlocking on its behalf), between our release and acquire: the condition is
// wrapped so that its evaluation acquires and releases too.
void Mutex::Await(const Condition& cond) {
  static const WithCond real = Real<WithCond>("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  VisibleCondition visible{this, &cond};
  __tsan_release(this);
  real(this, Condition(&VisibleCondition::Eval, &visible));
  __tsan_acquire(this);
}

// The same, with a timeout (the in-process session tests wait for their fake peers this way).
bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  using WithTimeout = bool (*)(absl::Mutex*, const absl::Condition&, absl::Duration);
  static const WithTimeout real =
      Real<WithTimeout>("_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  VisibleCondition visible{this, &cond};
  __tsan_release(this);
  const bool result = real(this, Condition(&VisibleCondition::Eval, &visible), timeout);
  __tsan_acquire(this);
  return result;
}
ABSL_NAMESPACE_END
}  // namespace absl

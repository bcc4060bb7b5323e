// Process-wide hardening: see process_hardening.h.
#include "common/util/process_hardening.h"

#include <execinfo.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/util/log.h"

namespace pgward {

void HardenProcess() {
  // Both soft and hard limit: a later setrlimit in this process cannot raise it again.
  const struct rlimit no_core = {0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    Log(LogLevel::kWarn, "process", "cannot disable core dumps: ", std::strerror(errno));
  }
  // prctl(2): with "dumpable" 0 no core is written even if a limit is raised from outside,
  // and ptrace attach needs CAP_SYS_PTRACE.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    Log(LogLevel::kWarn, "process", "cannot mark the process non-dumpable: ", std::strerror(errno));
  }
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
namespace {

constexpr int kFatalSignals[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};

void WriteAll(const char* text, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(STDERR_FILENO, text, size);
    if (n <= 0) return;
    text += n;
    size -= static_cast<size_t>(n);
  }
}

// Only async-signal-safe calls: write(2), strlen, and backtrace(3), whose unwinder (libgcc, which
// reads the binaries' DWARF unwind tables rather than frame pointers) was loaded by the
// warm-up call in InstallCrashReporter.
void OnFatalSignal(int signo, siginfo_t*, void*) {
  const char* name = sigabbrev_np(signo);
  if (name == nullptr) name = "?";
  WriteAll("*** SIG", 7);
  WriteAll(name, std::strlen(name));
  constexpr char kHeader[] = " received, stack trace (most recent first):\n";
  WriteAll(kHeader, sizeof kHeader - 1);
  void* frames[64];
  int depth = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  WriteAll("*** end of stack trace\n", 23);
  // SA_RESETHAND restored the default action: re-raise, and the process dies of the signal.
  ::raise(signo);
}

}  // namespace
#endif

void InstallCrashReporter() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // ASan and TSan install their own, richer fatal-signal reports.
#else
  void* warm_up[1];
  (void)::backtrace(warm_up, 1);
  static char alternate_stack[64 * 1024];  // a stack overflow still gets its report.
  stack_t stack = {};
  stack.ss_sp = alternate_stack;
  stack.ss_size = sizeof alternate_stack;
  ::sigaltstack(&stack, nullptr);
  struct sigaction action = {};
  action.sa_sigaction = OnFatalSignal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int signo : kFatalSignals) ::sigaction(signo, &action, nullptr);
#endif
}

}  // namespace pgward

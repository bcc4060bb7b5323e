// Process-wide hardening for daemons that hold secrets (tokens, stored passwords, keys).
#pragma once

namespace pgward {

// Call first thing in main(). Turns off core dumps (RLIMIT_CORE 0) and marks the process
// non-dumpable (prctl PR_SET_DUMPABLE 0), which also keeps other processes of the same user
// from attaching with ptrace or reading /proc/<pid>/mem: a crash or a curious neighbour must
// not leave the process's memory (agent tokens, database passwords) on disk. Failures are
// logged and otherwise ignored: they only lose defence in depth.
void HardenProcess();

// Call right after HardenProcess(). A fatal signal (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL)
// on any thread then writes a line naming the signal and the thread's stack trace to stderr
// (one "binary(symbol+offset)[address]" per frame, the symbol often empty: `addr2line -f -C
// -e binary offset` turns a frame into a function and source line) before the process dies of the signal as before. With core
// dumps off, that trace in the log is all an operator (or CI) has to report a crash with.
// Only code addresses and symbol names are printed, never memory contents. Sanitizer builds
// keep their own, richer reports.
void InstallCrashReporter();

}  // namespace pgward

// Process-wide hardening for daemons that hold secrets (tokens, stored passwords, keys).
#pragma once

namespace pgward {

// Call first thing in main(). Turns off core dumps (RLIMIT_CORE 0) and marks the process
// non-dumpable (prctl PR_SET_DUMPABLE 0), which also keeps other processes of the same user
// from attaching with ptrace or reading /proc/<pid>/mem: a crash or a curious neighbour must
// not leave the process's memory (agent tokens, database passwords) on disk. Failures are
// logged and otherwise ignored: they only lose defence in depth.
void HardenProcess();

}  // namespace pgward

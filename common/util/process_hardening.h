// Process-wide hardening for pgward daemons that hold secrets in memory.
#pragma once

namespace pgward {

// No core dumps and no ptrace attach by other processes of the same user: a crash or a
// debugger must not write database passwords, tokens or keys to disk
// (prctl(PR_SET_DUMPABLE, 0), setrlimit(RLIMIT_CORE, 0)). Logs a warning if either fails.
void HardenProcess();

}  // namespace pgward

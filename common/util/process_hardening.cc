// Process-wide hardening: see process_hardening.h.
#include "common/util/process_hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

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

}  // namespace pgward

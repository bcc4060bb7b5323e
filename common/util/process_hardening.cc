// No core dumps, no same-user ptrace: see process_hardening.h.
#include "common/util/process_hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "common/util/log.h"

namespace pgward {

void HardenProcess() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    Log(LogLevel::kWarn, "process", "prctl(PR_SET_DUMPABLE, 0) failed: ", std::strerror(errno));
  }
  const struct rlimit no_core = {0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    Log(LogLevel::kWarn, "process", "setrlimit(RLIMIT_CORE, 0) failed: ", std::strerror(errno));
  }
}

}  // namespace pgward

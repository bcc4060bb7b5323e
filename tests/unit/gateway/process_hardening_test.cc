// HardenProcess: no core dumps and not dumpable (checked in a child, which it changes for good).
#include <catch2/catch.hpp>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util/process_hardening.h"

namespace {

TEST_CASE("a hardened process writes no core and is not dumpable", "[hardening]") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    pgward::HardenProcess();
    struct rlimit core {};
    const bool no_core = ::getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_cur == 0 && core.rlim_max == 0;
    const bool not_dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0;
    // The hard limit is 0 too: the process cannot raise it again.
    const struct rlimit raise = {RLIM_INFINITY, RLIM_INFINITY};
    const bool cannot_raise = ::geteuid() == 0 || ::setrlimit(RLIMIT_CORE, &raise) != 0;
    ::_exit(no_core && not_dumpable && cannot_raise ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace

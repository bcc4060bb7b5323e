#!/usr/bin/env bash
# Runs pgward's whole test suite on a Debian 12 machine: installs what it needs, builds,
# runs the Catch2 unit tests (ctest), then the integration tests (pytest), which start their
# own throwaway Postgres 15, test IdP, gateway and agents. Then the sanitizer stages: the
# whole integration suite again on an ASan+UBSan build, and the in-process concurrency unit
# tests (ctest label "concurrency") on a TSan build. PGWARD_SANITIZERS=0 skips those two
# stages for a quick local run; CI runs them.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO_ROOT"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
ASAN_BUILD_DIR="${ASAN_BUILD_DIR:-$REPO_ROOT/build-asan}"
TSAN_BUILD_DIR="${TSAN_BUILD_DIR:-$REPO_ROOT/build-tsan}"
SANITIZERS="${PGWARD_SANITIZERS:-1}"
# Test binaries whose "concurrency" tests run under TSan (tests/unit/CMakeLists.txt lists the
# specs). admin_test is labelled too but not in this list: its in-process gRPC server and client
# hand work between threads inside uninstrumented libgrpc, and TSan reports every such hand-off
# (README: the TSan stage).
TSAN_TEST_BINARIES=(identity_test inspect_test net_test gateway_test agent_test)
SUPP="$REPO_ROOT/tests/sanitizers"

START=$SECONDS
STAGE_START=$SECONDS
stage() {  # prints how long the previous stage took, then the next stage's name
  echo "== ($((SECONDS - STAGE_START)) s) $1"
  STAGE_START=$SECONDS
}

stage "dependencies"
bash deploy/install-deps.sh
(cd tests/idp && npm ci --silent --no-audit --no-fund)
if [ -f tests/integration/node/package-lock.json ]; then
  (cd tests/integration/node && npm ci --silent --no-audit --no-fund)
fi

# The three builds go through ccache (installed above): a rebuild of unchanged sources, in this
# checkout or another one of the same repository (CCACHE_BASEDIR, CCACHE_NOHASHDIR), is a cache
# hit. A cold cache only costs the first run its compile time; the results are the same.
CMAKE_LAUNCHER=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$REPO_ROOT}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
  CMAKE_LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

stage "build"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_WERROR=ON "${CMAKE_LAUNCHER[@]}"
ninja -C "$BUILD_DIR" -j "$(nproc)"

stage "unit tests"
(cd "$BUILD_DIR" && ctest -j "$(nproc)" --output-on-failure -L unit)

stage "integration tests"
PGWARD_BUILD_DIR="$BUILD_DIR" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider

if [ "$SANITIZERS" != "0" ]; then
  # Only what the integration suite runs is built with ASan+UBSan.
  stage "ASan+UBSan build"
  cmake -S . -B "$ASAN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_WERROR=ON \
    -DPGWARD_SANITIZE=address,undefined "${CMAKE_LAUNCHER[@]}"
  ninja -C "$ASAN_BUILD_DIR" -j "$(nproc)" pgward-gateway pgward-agent pgwardctl rogue_agent bulk_reader

  # abort_on_error/halt_on_error: a finding ends the process; the harness also fails the run
  # on any sanitizer report in a gateway/agent log or a pgwardctl/rogue_agent stderr.
  # quarantine_size_mb=16 (default 256): freed memory ASan holds back counts in RSS, and the
  # back-pressure test bounds the gateway's and agent's RSS growth at 64 MB.
  stage "integration tests (ASan+UBSan)"
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:quarantine_size_mb=16" \
  LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  PGWARD_BUILD_DIR="$ASAN_BUILD_DIR" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider

  stage "TSan build (concurrency unit tests)"
  cmake -S . -B "$TSAN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_WERROR=ON \
    -DPGWARD_SANITIZE=thread "${CMAKE_LAUNCHER[@]}"
  ninja -C "$TSAN_BUILD_DIR" -j "$(nproc)" "${TSAN_TEST_BINARIES[@]}"

  stage "concurrency unit tests (TSan)"
  (cd "$TSAN_BUILD_DIR" &&
    TSAN_OPTIONS="suppressions=$SUPP/tsan.supp:halt_on_error=1:second_deadlock_stack=1" \
    ctest -j "$(nproc)" --output-on-failure -L concurrency \
      -R "^($(IFS='|'; echo "${TSAN_TEST_BINARIES[*]}")) concurrency:")
fi
stage "done: $((SECONDS - START)) s in total"

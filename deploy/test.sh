#!/usr/bin/env bash
# Runs pgward's whole test suite on a Debian 12 machine: installs what it needs, builds,
# runs the Catch2 unit tests (ctest), then the integration tests (pytest), which start their
# own throwaway Postgres 15, test IdP, gateway and agents.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO_ROOT"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"

bash deploy/install-deps.sh
(cd tests/idp && npm ci --silent --no-audit --no-fund)
if [ -f tests/integration/node/package-lock.json ]; then
  (cd tests/integration/node && npm ci --silent --no-audit --no-fund)
fi

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_WERROR=ON
ninja -C "$BUILD_DIR" -j "$(nproc)"

echo "== unit tests"
(cd "$BUILD_DIR" && ctest -j "$(nproc)" --output-on-failure -L unit)

echo "== integration tests"
PGWARD_BUILD_DIR="$BUILD_DIR" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider

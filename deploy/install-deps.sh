#!/usr/bin/env bash
# Installs everything pgward's build, tests, benchmark and quickstart need on Debian 12.
# Idempotent: packages already present are skipped by apt; npm deps use the committed lock.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libssl-dev libsqlite3-dev catch2 libcpp-jwt-dev nlohmann-json3-dev libpg-query-dev
  libpq-dev libcurl4-openssl-dev libasio-dev zlib1g-dev
  postgresql-15 postgresql-client-15 pgbouncer
  libpostgresql-jdbc-java openjdk-17-jdk-headless python3-psycopg2 python3-psycopg python3-pytest
  openssl curl jq procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node.js may come from NodeSource (which bundles npm) or from Debian (separate packages).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Debian postgresql package starts a cluster on :5432; pgward never uses it, but it is
# harmless. Our tests and the quickstart start their own throwaway clusters.
echo "install-deps: all packages present"

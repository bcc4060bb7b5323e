# Shell helpers shared by the quickstart and the benchmark: start a throwaway Postgres, the
# test IdP, a gateway and an agent in one work directory, and stop exactly what was started.
# Source it; set STACK_DIR first. Every started pid is written to $STACK_DIR/pids.

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

record_pid() { echo "$1" >> "$STACK_DIR/pids"; }

stop_stack() {
  [ -f "$STACK_DIR/pids" ] || return 0
  # Reverse start order: agents before the gateway before Postgres.
  tac "$STACK_DIR/pids" | while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  tac "$STACK_DIR/pids" | while read -r pid; do
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "${PGDATA_DIR:-}" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -f "$STACK_DIR/pids"
}

wait_for_port() {  # host port seconds
  local deadline=$((SECONDS + ${3:-20}))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $1:$2" >&2; return 1; }
    sleep 0.1
  done
}

# start_postgres PORT [fsync on|off]: a throwaway cluster in $STACK_DIR/pg with SCRAM and TLS.
start_postgres() {
  PG_PORT="$1"
  PGDATA_DIR="$STACK_DIR/pg/data"
  PG_SOCKET_DIR="$STACK_DIR/pg/socket"
  mkdir -p "$PGDATA_DIR" "$PG_SOCKET_DIR"
  chown -R postgres:postgres "$STACK_DIR/pg"
  chmod 700 "$PGDATA_DIR"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 >"$STACK_DIR/pg/initdb.log" 2>&1
  # A self-signed server certificate so agents can use sslmode=require.
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -keyout "$PGDATA_DIR/server.key" -out "$PGDATA_DIR/server.crt" >/dev/null 2>&1
  chown postgres:postgres "$PGDATA_DIR/server.key" "$PGDATA_DIR/server.crt"
  chmod 600 "$PGDATA_DIR/server.key"
  cat >> "$PGDATA_DIR/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
ssl = on
password_encryption = 'scram-sha-256'
max_connections = 300
fsync = ${2:-on}
log_line_prefix = '%m [%p] app=%a '
log_statement = '${PG_LOG_STATEMENT:-none}'
CONF
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$STACK_DIR/pg/postgres.log" -w start >/dev/null
  record_pid "$(head -1 "$PGDATA_DIR/postmaster.pid")"
}

psql_admin() {  # psql as the superuser over the unix socket
  runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

# start_idp CLIENTS_JSON [TTL]: sets IDP_ISSUER.
start_idp() {
  (cd "$REPO_ROOT/tests/idp" && [ -d node_modules/oidc-provider ] || npm ci --silent --no-audit --no-fund >/dev/null)
  local port; port=$(free_port)
  node "$REPO_ROOT/tests/idp/server.js" --port "$port" --clients "$1" --ttl "${2:-600}" \
    >"$STACK_DIR/idp.log" 2>&1 &
  record_pid $!
  wait_for_port 127.0.0.1 "$port" 20
  IDP_ISSUER="http://127.0.0.1:$port"
}

# fetch_token CLIENT_ID SECRET: prints an access token from the IdP.
fetch_token() {
  curl -sf -u "$1:$2" -d grant_type=client_credentials "$IDP_ISSUER/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# start_gateway: sets GW_PG_PORT, GW_GRPC_PORT, GW_DIR; extra flags in GW_FLAGS.
start_gateway() {
  GW_DIR="$STACK_DIR/gateway"
  GW_PG_PORT=$(free_port)
  GW_GRPC_PORT=$(free_port)
  mkdir -p "$GW_DIR"
  "$BUILD_DIR/gateway/pgward-gateway" --data-dir "$GW_DIR" --pg-listen "127.0.0.1:$GW_PG_PORT" \
    --grpc-listen "127.0.0.1:$GW_GRPC_PORT" --oidc-issuer "$IDP_ISSUER" --oidc-audience pgward \
    ${GW_FLAGS:-} >"$STACK_DIR/gateway.log" 2>&1 &
  record_pid $!
  wait_for_port 127.0.0.1 "$GW_PG_PORT" 20
  wait_for_port 127.0.0.1 "$GW_GRPC_PORT" 20
  export PGWARD_GATEWAY="127.0.0.1:$GW_GRPC_PORT"
  export PGWARD_TOKEN_FILE="$GW_DIR/admin.key"
  export PGWARD_CA_FILE="$GW_DIR/tls/gateway.crt"
}

pgwardctl() { "$BUILD_DIR/tools/pgwardctl/pgwardctl" "$@"; }

# start_agent NAME [ENV=VALUE...]: creates the agent through the admin API and starts it.
# The agent may reach only the Postgres started by start_postgres (127.0.0.1:$PG_PORT) and read
# only the environment variables given here (--allow-upstream, --allow-credential); extra agent
# flags go in AGENT_FLAGS. Its --data-dir (event spool) is $STACK_DIR/NAME-data, or none at all
# with AGENT_NO_DATA_DIR=1 (statement events then live in memory only).
start_agent() {
  local name="$1"; shift
  local allow=(--allow-upstream "127.0.0.1:${PG_PORT:?start_postgres first}")
  local data=(--data-dir "$STACK_DIR/$name-data")
  [ "${AGENT_NO_DATA_DIR:-0}" = 1 ] && data=()
  local assignment
  for assignment in "$@"; do allow+=(--allow-credential "agent-env:${assignment%%=*}"); done
  pgwardctl agent create "$name" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$STACK_DIR/$name.token"
  chmod 600 "$STACK_DIR/$name.token"
  # shellcheck disable=SC2086 # AGENT_FLAGS is a list of flags
  env "$@" "$BUILD_DIR/agent/pgward-agent" --gateway "127.0.0.1:$GW_GRPC_PORT" --name "$name" \
    --token-file "$STACK_DIR/$name.token" --ca-file "$GW_DIR/tls/gateway.crt" \
    "${data[@]}" "${allow[@]}" ${AGENT_FLAGS:-} >"$STACK_DIR/$name.log" 2>&1 &
  record_pid $!
  local deadline=$((SECONDS + 20))
  until pgwardctl agent list --json | python3 -c "import json,sys; sys.exit(0 if any(a['name']=='$name' and a['online'] for a in json.load(sys.stdin)) else 1)"; do
    [ $SECONDS -lt $deadline ] || { echo "agent $name did not come online; see $STACK_DIR/$name.log" >&2; return 1; }
    sleep 0.2
  done
}

#!/usr/bin/env bash
# pgward benchmark: pgbench -S, bulk transfers (1 GB COPY TO STDOUT and SELECT) and 1,000
# concurrent sessions through pgward, side by side with direct PostgreSQL and PgBouncer on the
# same machine, interleaved in rounds so that drift (other load, thermal, cache) hits all targets
# alike. Writes a report to stdout and to bench/RESULTS.md. See bench/README.md.
set -euo pipefail

usage() {
  cat <<USAGE
usage: bench/run.sh [--pgbench] [--bulk] [--sessions1000] [--quick] [--rounds N] [--duration S]
                    [--keep-dir] [--no-results]
  --pgbench      the pgbench scenarios (c1, c8, connect, connectpy)
  --bulk         1 GB COPY TO STDOUT and 1 GB SELECT per target, plus a slow reader through pgward
  --sessions1000 1,000 concurrent sessions per target, with the proxies' RSS
                 Without any of these three, all of them run (--quick: only --pgbench); with
                 some, only those.
  --quick        smoke run: 1 round, -T 3 (RESULTS.md is still written unless --no-results)
  --rounds N     rounds (default 3); each round runs every target once per scenario
  --duration S   pgbench -T per run (default 10)
  --keep-dir     keep the temp work dir (logs, configs) after the run
  --no-results   do not overwrite bench/RESULTS.md
Environment: BUILD_DIR (default <repo>/build, RelWithDebInfo binaries expected),
             PG_BIN (default /usr/lib/postgresql/15/bin), BENCH_SCALE (pgbench -s, default 10),
             BENCH_BULK_MB (default 1024), BENCH_BULK_ROW_BYTES (default 1000),
             BENCH_SLOW_MB (default 256), BENCH_SLOW_RATE_MB_S (default 32),
             BENCH_SESSIONS (default 1000)
USAGE
}

ROUNDS=3
DURATION=10
KEEP_DIR=0
WRITE_RESULTS=1
QUICK=0
RUN_PGBENCH=0
RUN_BULK=0
RUN_SESSIONS=0
ORIG_ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --pgbench) RUN_PGBENCH=1 ;;
    --bulk) RUN_BULK=1 ;;
    --sessions1000) RUN_SESSIONS=1 ;;
    --quick) QUICK=1; ROUNDS=1; DURATION=3 ;;
    --rounds) ROUNDS="${2:?--rounds needs a value}"; shift ;;
    --duration) DURATION="${2:?--duration needs a value}"; shift ;;
    --keep-dir) KEEP_DIR=1 ;;
    --no-results) WRITE_RESULTS=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --rounds must be a positive integer" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --duration must be a positive integer" >&2; exit 2; }
if [ $((RUN_PGBENCH + RUN_BULK + RUN_SESSIONS)) -eq 0 ]; then
  RUN_PGBENCH=1
  [ "$QUICK" -eq 1 ] || { RUN_BULK=1; RUN_SESSIONS=1; }
fi
BULK_MB="${BENCH_BULK_MB:-1024}"
BULK_ROW_BYTES="${BENCH_BULK_ROW_BYTES:-1000}"
SLOW_MB="${BENCH_SLOW_MB:-256}"
SLOW_RATE="${BENCH_SLOW_RATE_MB_S:-32}"
SESSIONS="${BENCH_SESSIONS:-1000}"
for v in BULK_MB BULK_ROW_BYTES SLOW_MB SLOW_RATE SESSIONS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
# Rows of BULK_ROW_BYTES characters; each COPY line is one byte longer (its newline).
BULK_ROWS=$((BULK_MB * 1000000 / BULK_ROW_BYTES))
SLOW_ROWS=$((SLOW_MB * 1000000 / BULK_ROW_BYTES))

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
SCALE="${BENCH_SCALE:-10}"
PGBENCH="$PG_BIN/pgbench"
PY=/usr/bin/python3
export REPO_ROOT BUILD_DIR PG_BIN

# libpq settings inherited from the caller's shell would redirect the admin and bench connections.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^PG[A-Z]+$' || true)

die() { echo "bench: error: $*" >&2; exit 1; }
log() { printf '\033[1m[bench %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- preflight --------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (Postgres and PgBouncer are started as the postgres user via runuser)"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install postgresql-15)"
for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PGBENCH" /usr/sbin/pgbouncer node curl openssl psql runuser; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool (see deploy/install-deps.sh)"
done
BULK_READER="$BUILD_DIR/bench/bulk_reader"
if [ ! -x "$BUILD_DIR/gateway/pgward-gateway" ] || [ ! -x "$BUILD_DIR/agent/pgward-agent" ] ||
   [ ! -x "$BUILD_DIR/tools/pgwardctl/pgwardctl" ] || { [ "$RUN_BULK" -eq 1 ] && [ ! -x "$BULK_READER" ]; }; then
  log "pgward binaries missing in $BUILD_DIR: building (RelWithDebInfo, -j2)"
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD_DIR" -j2 pgward-gateway pgward-agent pgwardctl grpc_floor bulk_reader audit_rate
fi
if [ "$RUN_SESSIONS" -eq 1 ]; then
  # Every session is a socket in the client, the gateway, the agent and PgBouncer (all started
  # from this shell, so they inherit this limit), plus one upstream socket per session.
  need_fds=$((3 * SESSIONS + 256))
  [ "$(ulimit -n)" -ge "$need_fds" ] || ulimit -n "$need_fds" 2>/dev/null ||
    die "ulimit -n is $(ulimit -n) and cannot be raised to $need_fds for $SESSIONS sessions"
fi
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)"
[ "$BUILD_TYPE" = "RelWithDebInfo" ] || [ "$BUILD_TYPE" = "Release" ] ||
  log "WARNING: $BUILD_DIR is a '${BUILD_TYPE:-unknown}' build; figures will not be representative"

# ---- work dir and cleanup ---------------------------------------------------------------
STACK_DIR="$(mktemp -d /tmp/pgward-bench.XXXXXX)"
chmod 755 "$STACK_DIR"
# shellcheck source=../deploy/lib/stack.sh
source "$REPO_ROOT/deploy/lib/stack.sh"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_stack || true
  if [ "$KEEP_DIR" -eq 1 ] || [ "$rc" -ne 0 ]; then
    echo "bench: work dir (logs, configs) kept at $STACK_DIR" >&2
  else
    rm -rf "$STACK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- PostgreSQL (fsync on) ----------------------------------------------------------------
log "starting PostgreSQL 15 (fsync=on, ssl=on, scram) in $STACK_DIR/pg"
start_postgres "$(free_port)" on || die "PostgreSQL did not start; see $STACK_DIR/pg/postgres.log"
PG_MAX_CONNECTIONS=300
if [ "$RUN_SESSIONS" -eq 1 ] && [ $((SESSIONS + 200)) -gt "$PG_MAX_CONNECTIONS" ]; then
  # One backend per pgward session (the agent logs in once per session), plus PgBouncer's pool.
  PG_MAX_CONNECTIONS=$((SESSIONS + 200))
  log "restarting PostgreSQL with max_connections=$PG_MAX_CONNECTIONS for $SESSIONS sessions"
  psql_admin -c "ALTER SYSTEM SET max_connections = $PG_MAX_CONNECTIONS"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$STACK_DIR/pg/postgres.log" -w restart >/dev/null ||
    die "PostgreSQL did not restart; see $STACK_DIR/pg/postgres.log"
  record_pid "$(head -1 "$PGDATA_DIR/postmaster.pid")"
fi
DB_USER=bench
DB_NAME=bench
DB_PASSWORD="$(openssl rand -hex 16)"
psql_admin -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD'"
psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"

log "pgbench -i -s $SCALE (directly on PostgreSQL)"
PGPASSWORD="$DB_PASSWORD" PGSSLMODE=require "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" \
  -U "$DB_USER" "$DB_NAME" >"$STACK_DIR/pgbench-init.log" 2>&1 ||
  die "pgbench -i failed; see $STACK_DIR/pgbench-init.log"

# ---- PgBouncer (transaction pooling, SCRAM, client TLS) ----------------------------------
log "starting PgBouncer (pool_mode=transaction, auth_type=scram-sha-256, client TLS required)"
BOUNCER_DIR="$STACK_DIR/pgbouncer"
BOUNCER_PORT="$(free_port)"
mkdir -p "$BOUNCER_DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
  -keyout "$BOUNCER_DIR/client.key" -out "$BOUNCER_DIR/client.crt" >/dev/null 2>&1
# The auth_file holds the role's SCRAM secret exactly as PostgreSQL stores it (no plaintext);
# PgBouncer uses it both to authenticate clients and, after a SCRAM client login, to log in
# to the server.
SCRAM_SECRET="$(psql_admin -At -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$DB_USER'")"
[[ "$SCRAM_SECRET" == SCRAM-SHA-256* ]] || die "could not read the SCRAM secret of role $DB_USER"
printf '"%s" "%s"\n' "$DB_USER" "$SCRAM_SECRET" >"$BOUNCER_DIR/userlist.txt"
cat >"$BOUNCER_DIR/pgbouncer.ini" <<INI
[databases]
$DB_NAME = host=127.0.0.1 port=$PG_PORT dbname=$DB_NAME
; PgBouncer 1.18 cannot carry protocol-level prepared statements across transaction-pooled
; server connections (pgbench -M prepared -c 8 fails: prepared statement "P_0" already exists),
; so the 8-client prepared scenario uses this session-pooled alias of the same database.
${DB_NAME}_session = host=127.0.0.1 port=$PG_PORT dbname=$DB_NAME pool_mode=session
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $BOUNCER_DIR/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = $(( RUN_SESSIONS == 1 && SESSIONS + 100 > 200 ? SESSIONS + 100 : 200 ))
client_tls_sslmode = require
client_tls_key_file = $BOUNCER_DIR/client.key
client_tls_cert_file = $BOUNCER_DIR/client.crt
server_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
logfile = $BOUNCER_DIR/pgbouncer.log
pidfile = $BOUNCER_DIR/pgbouncer.pid
INI
chown -R postgres:postgres "$BOUNCER_DIR"
chmod 600 "$BOUNCER_DIR/client.key" "$BOUNCER_DIR/userlist.txt"
# runuser's PAM session resets the soft open-files limit (1024 here): raise it again inside, to
# this shell's limit, or PgBouncer stops accepting at ~1,000 clients ("Too many open files").
runuser -u postgres -- sh -c 'ulimit -n "$1" 2>/dev/null; exec /usr/sbin/pgbouncer -d "$2"' sh "$(ulimit -n)" \
  "$BOUNCER_DIR/pgbouncer.ini" >"$BOUNCER_DIR/start.log" 2>&1 ||
  die "PgBouncer did not start; see $BOUNCER_DIR/start.log and pgbouncer.log"
for _ in $(seq 100); do [ -s "$BOUNCER_DIR/pgbouncer.pid" ] && break; sleep 0.1; done
[ -s "$BOUNCER_DIR/pgbouncer.pid" ] || die "PgBouncer wrote no pidfile; see $BOUNCER_DIR/pgbouncer.log"
BOUNCER_PID="$(cat "$BOUNCER_DIR/pgbouncer.pid")"
record_pid "$BOUNCER_PID"
wait_for_port 127.0.0.1 "$BOUNCER_PORT" 20 || die "PgBouncer is not listening; see $BOUNCER_DIR/pgbouncer.log"

# ---- IdP, gateway, agent -----------------------------------------------------------------
log "starting the test IdP, pgward-gateway and pgward-agent"
CLIENT_ID=bench-client
CLIENT_SECRET="$(openssl rand -hex 12)"
cat >"$STACK_DIR/clients.json" <<JSON
[{"client_id": "$CLIENT_ID", "client_secret": "$CLIENT_SECRET", "groups": ["bench"]}]
JSON
start_idp "$STACK_DIR/clients.json" 3600 || die "IdP did not start; see $STACK_DIR/idp.log"
# The session caps (100 per connection, 20 per principal by default) are raised above the
# sessions scenario's count; pgbench never comes near either.
GW_FLAGS="--max-sessions-per-connection $((SESSIONS + 100))"
start_gateway || die "gateway did not start; see $STACK_DIR/gateway.log"
GW_PID="$(tail -1 "$STACK_DIR/pids")"
start_agent bench-agent BENCH_DB_PASSWORD="$DB_PASSWORD" || die "agent did not start; see $STACK_DIR/bench-agent.log"
AGENT_PID="$(tail -1 "$STACK_DIR/pids")"
# The pgbench scenarios also run through a second agent without --data-dir (no event spool,
# events in agent memory only), target pgward-nospool: the spool's cost, side by side.
AGENT_NO_DATA_DIR=1 start_agent bench-agent-nospool BENCH_DB_PASSWORD="$DB_PASSWORD" ||
  die "agent did not start; see $STACK_DIR/bench-agent-nospool.log"
NOSPOOL_AGENT_PID="$(tail -1 "$STACK_DIR/pids")"
# Upstream leg agent -> Postgres without TLS, like PgBouncer -> Postgres: the comparison is
# about the proxy, and the client leg of every target uses TLS.
pgwardctl connection create "$DB_NAME" --agent bench-agent --host 127.0.0.1 --port "$PG_PORT" \
  --database "$DB_NAME" --user "$DB_USER" --password-ref agent-env:BENCH_DB_PASSWORD --sslmode disable >/dev/null
pgwardctl grant create --principal "$CLIENT_ID" --connection "$DB_NAME" --mode read-only \
  --max-sessions "$((SESSIONS + 100))" >/dev/null
pgwardctl connection create "${DB_NAME}_nospool" --agent bench-agent-nospool --host 127.0.0.1 --port "$PG_PORT" \
  --database "$DB_NAME" --user "$DB_USER" --password-ref agent-env:BENCH_DB_PASSWORD --sslmode disable >/dev/null
pgwardctl grant create --principal "$CLIENT_ID" --connection "${DB_NAME}_nospool" --mode read-only >/dev/null

TOKEN=""
TOKEN_AT=0
refresh_token() {  # tokens live 3600 s here; fetch a fresh one every 5 minutes anyway
  if [ -z "$TOKEN" ] || [ $((SECONDS - TOKEN_AT)) -gt 300 ]; then
    TOKEN="$(fetch_token "$CLIENT_ID" "$CLIENT_SECRET")" || die "could not fetch a token from $IDP_ISSUER"
    [ -n "$TOKEN" ] || die "empty token from $IDP_ISSUER"
    TOKEN_AT=$SECONDS
  fi
}

# target_env TARGET [SCENARIO]: prints the libpq environment for one target (all sslmode=require).
target_env() {
  case "$1" in
    direct)   echo "PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=$DB_USER PGPASSWORD=$DB_PASSWORD PGDATABASE=$DB_NAME PGSSLMODE=require" ;;
    pgbouncer) local db="$DB_NAME"; [ "${2:-}" = c8 ] && db="${DB_NAME}_session"
              echo "PGHOST=127.0.0.1 PGPORT=$BOUNCER_PORT PGUSER=$DB_USER PGPASSWORD=$DB_PASSWORD PGDATABASE=$db PGSSLMODE=require" ;;
    pgward)   refresh_token
              echo "PGHOST=127.0.0.1 PGPORT=$GW_PG_PORT PGUSER=$CLIENT_ID PGPASSWORD=$TOKEN PGDATABASE=$DB_NAME PGSSLMODE=require" ;;
    pgward-nospool) refresh_token
              echo "PGHOST=127.0.0.1 PGPORT=$GW_PG_PORT PGUSER=$CLIENT_ID PGPASSWORD=$TOKEN PGDATABASE=${DB_NAME}_nospool PGSSLMODE=require" ;;
  esac
}

# Smoke check each target once before measuring, so a broken leg fails fast and clearly.
for t in direct pgbouncer pgward pgward-nospool; do
  # shellcheck disable=SC2046
  out="$(env $(target_env "$t" c8) psql -X -At -c "SELECT count(*) FROM pgbench_branches" 2>&1)" ||
    die "target $t (c8 database): psql smoke query failed: $out"
  # shellcheck disable=SC2046
  out="$(env $(target_env "$t") psql -X -At -c "SELECT count(*) FROM pgbench_branches" 2>&1)" ||
    die "target $t: psql smoke query failed: $out"
  [ "$out" = "$SCALE" ] || die "target $t: expected $SCALE rows in pgbench_branches, got: $out"
  log "target $t reachable (client leg sslmode=require)"
done

cpu_ticks() {  # utime+stime of a pid in clock ticks, 0 if gone
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
CLK_TCK="$(getconf CLK_TCK)"

# ---- the measurement loop ---------------------------------------------------------------
# c1, c8: pgbench -S -M prepared; connect: pgbench -S -C (fresh connection per transaction);
# connectpy: bench/connect_rate.py, the same connect+SELECT cycle but a failed connect is counted
# instead of aborting the client (pgbench -C aborts a client on its first failed connect).
SCENARIOS=(c1 c8 c8s connect connectpy)
TARGETS=(direct pgbouncer pgward)
PGBENCH_TARGETS=("${TARGETS[@]}" pgward-nospool)
agent_pid() { if [ "$1" = pgward-nospool ]; then echo "$NOSPOOL_AGENT_PID"; else echo "$AGENT_PID"; fi; }
scenario_args() {
  case "$1" in
    c1)      echo "-n -S -M prepared -c 1 -j 1 -T $DURATION" ;;
    c8)      echo "-n -S -M prepared -c 8 -j 2 -T $DURATION" ;;
    c8s)     echo "-n -S -M simple -c 8 -j 2 -T $DURATION" ;;
    connect) echo "-n -S -C -c 4 -j 2 -T $DURATION" ;;
  esac
}
MAX_ATTEMPTS=5   # c1/c8 only: a run whose initial connections fail is repeated (and counted)

# parse_pgbench LOG RC: prints tps, latency, connection time, failed transactions and a note.
parse_pgbench() {
  $PY - "$1" "$2" <<'PY'
import re, sys
text, rc = open(sys.argv[1]).read(), int(sys.argv[2])
def grab(pattern):
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else ""
tps = grab(r"^tps = ([0-9.]+)")
lat = grab(r"^latency average = ([0-9.]+) ms")
conn = grab(r"^average connection time = ([0-9.]+) ms")
failed = grab(r"^number of failed transactions: ([0-9]+)") or "0"
note = "-"
if rc != 0:
    aborted = len(re.findall(r"client \d+ aborted", text))
    err = grab(r"^pgbench: error: (connection to server.*)$")
    note = f"ABORTED: {aborted} client(s) aborted" + (f" ({' '.join(err.split())[:90]})" if err else "")
    if rc == 139 or rc == 134:
        note += f"; pgbench crashed (exit {rc})"
if not tps or not lat:
    sys.exit(1)
print(f"{tps}\t{lat}\t{conn or '-'}\t{failed}\t{note}")
PY
}

RAW="$STACK_DIR/raw.tsv"
FLOOR="$STACK_DIR/floor.jsonl"
: >"$FLOOR"
AUDIT_RATE="$STACK_DIR/audit_rate.jsonl"
: >"$AUDIT_RATE"
printf 'round\tscenario\ttarget\ttps\tlat_ms\tconn_ms\tfailed\tnote\tattempts\tgw_cpu_s\tagent_cpu_s\tbouncer_cpu_s\tloadavg\tp99_ms\n' >"$RAW"
if [ "$RUN_PGBENCH" -eq 1 ]; then
  TOTAL_RUNS=$((ROUNDS * ${#SCENARIOS[@]} * ${#PGBENCH_TARGETS[@]}))
  run_no=0
  log "measuring: $ROUNDS round(s) x ${#SCENARIOS[@]} scenarios x ${#PGBENCH_TARGETS[@]} targets, -T $DURATION each (~$((TOTAL_RUNS * (DURATION + 2))) s)"
  for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SCENARIOS[@]}"; do
      # Rotate the target order each round (and per scenario) so no target always runs first.
      off=$(( (r - 1 + ${#s}) % ${#PGBENCH_TARGETS[@]} ))
      order=("${PGBENCH_TARGETS[@]:off}" "${PGBENCH_TARGETS[@]:0:off}")
      for t in "${order[@]}"; do
        apid="$(agent_pid "$t")"
        run_no=$((run_no + 1))
        attempt=0
        while :; do
          attempt=$((attempt + 1))
          out="$STACK_DIR/run-r$r-$s-$t-a$attempt.log"
          load="$(cut -d' ' -f1 /proc/loadavg)"
          g0=$(cpu_ticks "$GW_PID"); a0=$(cpu_ticks "$apid"); b0=$(cpu_ticks "$BOUNCER_PID")
          rc=0
          if [ "$s" = connectpy ]; then
            # shellcheck disable=SC2046
            env $(target_env "$t" "$s") $PY "$REPO_ROOT/bench/connect_rate.py" 4 "$DURATION" "$SCALE" >"$out" 2>&1 || rc=$?
          else
            # c1 also logs every transaction's latency, for its p99 (pgbench -l: column 3, us).
            txlog=()
            [ "$s" = c1 ] && txlog=(-l --log-prefix "$STACK_DIR/txlog-r$r-$s-$t-a$attempt")
            # shellcheck disable=SC2046
            (cd "$STACK_DIR" && env $(target_env "$t" "$s") "$PGBENCH" $(scenario_args "$s") "${txlog[@]}") >"$out" 2>&1 || rc=$?
          fi
          g1=$(cpu_ticks "$GW_PID"); a1=$(cpu_ticks "$apid"); b1=$(cpu_ticks "$BOUNCER_PID")
          if [ "$s" = connectpy ]; then
            [ "$rc" -eq 0 ] || { cat "$out" >&2; die "connect_rate.py made no connection to $t; see $out"; }
            # ok failed conn/s connect_ms cycle_ms first_error -> tps lat conn failed note
            line="$(awk -F'\t' '{printf "%s\t%s\t%s\t%s\t%s", $3, $5, $4, $2, ($2 > 0 ? "connect failures; first: " $6 : "-")}' "$out")"
            break
          fi
          if [ "$rc" -eq 0 ]; then
            line="$(parse_pgbench "$out" 0)" || die "could not parse pgbench output $out"
            break
          fi
          if [ "$s" = connect ]; then
            # pgbench -C aborts a client on its first failed connect; keep the partial figures,
            # flagged, and leave the rate to connectpy, which counts failures instead.
            line="$(parse_pgbench "$out" "$rc")" || line="$(printf -- '-\t-\t-\t-\tABORTED before any transaction (exit %s)' "$rc")"
            break
          fi
          log "round $r $s $t attempt $attempt failed (exit $rc): $(grep -m1 -E 'error|Segmentation' "$out" || tail -1 "$out")"
          [ "$attempt" -lt "$MAX_ATTEMPTS" ] || die "pgbench failed $MAX_ATTEMPTS times for target $t scenario $s; see $out"
        done
        p99="-"
        if [ "$s" = c1 ] && compgen -G "$STACK_DIR/txlog-r$r-$s-$t-a$attempt*" >/dev/null; then
          p99="$(cat "$STACK_DIR/txlog-r$r-$s-$t-a$attempt"* | awk '{print $3}' | sort -n |
            awk '{v[NR]=$1} END{if (NR) printf "%.3f", v[int(NR*0.99 + 0.999999)]/1000; else print "-"}')"
          rm -f "$STACK_DIR/txlog-r$r-$s-$t-a$attempt"*
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$t" "$line" "$attempt" \
          "$(awk -v d=$((g1 - g0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')" \
          "$(awk -v d=$((a1 - a0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')" \
          "$(awk -v d=$((b1 - b0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')" "$load" "$p99" >>"$RAW"
        log "[$run_no/$TOTAL_RUNS] round $r $s $t: $(echo "$line" | awk -F'\t' '{printf "tps=%s lat=%sms %s", $1, $2, ($5 == "-" ? "" : $5)}')"
      done
    done
    # The floor of the gateway<->agent hop, measured in the same round as the relay.
    if [ -x "$BUILD_DIR/bench/grpc_floor" ]; then
      for n in 1 8; do
        f="$("$BUILD_DIR/bench/grpc_floor" --sessions "$n" --seconds "$DURATION")" || die "grpc_floor --sessions $n failed"
        printf '{"round": %s, %s\n' "$r" "${f#\{}" >>"$FLOOR"
        log "round $r grpc_floor $n session(s): $f"
      done
    fi
    # The audit store path (issue 6 target 7): 30,000 events/s through the real AuditWriter and
    # Store into a SQLite file, from 4 producer threads playing agents' control streams.
    if [ -x "$BUILD_DIR/bench/audit_rate" ]; then
      a="$("$BUILD_DIR/bench/audit_rate" --rate 30000 --seconds "$(( DURATION < 5 ? DURATION : 5 ))" --producers 4 --batch 16)" ||
        die "audit_rate lost events or failed: $a"
      printf '{"round": %s, %s\n' "$r" "${a#\{}" >>"$AUDIT_RATE"
      log "round $r audit_rate: $a"
    fi
  done
fi

# rss_watch TARGET: bulk_reader/sessions.py --watch arguments for the proxy processes of TARGET.
rss_watch() {
  case "$1" in
    pgward) echo "--watch gateway=$GW_PID --watch agent=$AGENT_PID" ;;
    pgbouncer) echo "--watch pgbouncer=$BOUNCER_PID" ;;
  esac
}
cpu_s() {  # cpu_s TICKS_BEFORE TICKS_AFTER
  awk -v d=$(($2 - $1)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}'
}

# ---- bulk transfers (issue 6, target 4) -----------------------------------------------------
# Per round and per mode (COPY TO STDOUT, SELECT in single-row mode) every target streams
# BULK_MB of generated rows to bench/bulk_reader as fast as it reads; then the slow variant
# streams SLOW_MB through pgward to a reader held at SLOW_RATE MB/s, so that the gateway and
# the agent must hold back (backpressure) instead of buffering. bulk_reader samples VmRSS of
# the proxy processes every 50 ms during each transfer (VmHWM would be the lifetime peak).
BULK="$STACK_DIR/bulk.jsonl"
: >"$BULK"
# bulk_run ROUND TARGET VARIANT MODE ROWS [RATE]: one transfer, appended to $BULK as JSON.
bulk_run() {
  local r="$1" t="$2" variant="$3" mode="$4" rows="$5" rate="${6:-}" out f g0 a0 b0 g1 a1 b1 load
  out="$STACK_DIR/bulk-r$r-$variant-$mode-$t.log"
  load="$(cut -d' ' -f1 /proc/loadavg)"
  g0=$(cpu_ticks "$GW_PID"); a0=$(cpu_ticks "$AGENT_PID"); b0=$(cpu_ticks "$BOUNCER_PID")
  # shellcheck disable=SC2046
  env $(target_env "$t") "$BULK_READER" --mode "$mode" --rows "$rows" --row-bytes "$BULK_ROW_BYTES" \
    ${rate:+--rate-mb-s "$rate"} $(rss_watch "$t") >"$out" 2>&1 ||
    die "bulk_reader $mode through $t failed: $(tail -3 "$out")"
  g1=$(cpu_ticks "$GW_PID"); a1=$(cpu_ticks "$AGENT_PID"); b1=$(cpu_ticks "$BOUNCER_PID")
  f="$(tail -1 "$out")"
  printf '{"round": %s, "target": "%s", "variant": "%s", "gw_cpu_s": %s, "agent_cpu_s": %s, "bouncer_cpu_s": %s, "loadavg": %s, %s\n' \
    "$r" "$t" "$variant" "$(cpu_s "$g0" "$g1")" "$(cpu_s "$a0" "$a1")" "$(cpu_s "$b0" "$b1")" "$load" "${f#\{}" >>"$BULK"
  log "round $r bulk $variant $mode $t: $f"
}
if [ "$RUN_BULK" -eq 1 ]; then
  log "bulk: $ROUNDS round(s) x (COPY, SELECT) x ${#TARGETS[@]} targets, $BULK_MB MB each ($BULK_ROWS rows of $BULK_ROW_BYTES B); slow reader through pgward: $SLOW_MB MB at $SLOW_RATE MB/s"
  for ((r = 1; r <= ROUNDS; r++)); do
    for mode in copy select; do
      off=$(( (r - 1 + ${#mode}) % ${#TARGETS[@]} ))
      order=("${TARGETS[@]:off}" "${TARGETS[@]:0:off}")
      for t in "${order[@]}"; do bulk_run "$r" "$t" full "$mode" "$BULK_ROWS"; done
      bulk_run "$r" pgward slow "$mode" "$SLOW_ROWS" "$SLOW_RATE"
    done
  done
fi

# ---- concurrent sessions (issue 6, target 6) ------------------------------------------------
# Per round each proxy gets SESSIONS sessions from bench/sessions.py (16 connects in flight,
# one pgbench -S statement each, all held open together); the proxies' VmRSS is read before,
# with all open (after 1 s) and after they are closed, and sampled every 50 ms for the peak.
# Direct PostgreSQL is left out: it has no proxy whose memory to read, and its connect rate
# from this client is bound by the client's own SCRAM key derivation (libpq does it inside
# PQconnectPoll, on the client's one event-loop thread), as is PgBouncer's.
SESSION_TARGETS=(pgbouncer pgward)
SESS="$STACK_DIR/sessions.jsonl"
: >"$SESS"
if [ "$RUN_SESSIONS" -eq 1 ]; then
  log "sessions: $ROUNDS round(s) x ${#SESSION_TARGETS[@]} targets, $SESSIONS concurrent sessions each"
  for ((r = 1; r <= ROUNDS; r++)); do
    off=$(( (r - 1) % ${#SESSION_TARGETS[@]} ))
    order=("${SESSION_TARGETS[@]:off}" "${SESSION_TARGETS[@]:0:off}")
    for t in "${order[@]}"; do
      out="$STACK_DIR/sessions-r$r-$t.log"
      load="$(cut -d' ' -f1 /proc/loadavg)"
      # sessions.py exits 1 when some sessions could not be opened; the JSON line says how many.
      # shellcheck disable=SC2046
      # A target that stops accepting must fail the run, not hang it: 15 s per connect attempt.
      env $(target_env "$t") PGCONNECT_TIMEOUT=15 $PY "$REPO_ROOT/bench/sessions.py" --sessions "$SESSIONS" --scale "$SCALE" \
        $(rss_watch "$t") >"$out" 2>&1 || true
      f="$(tail -1 "$out")"
      [[ "$f" == \{* ]] || die "sessions.py through $t failed: $(tail -3 "$out")"
      printf '{"round": %s, "target": "%s", "loadavg": %s, %s\n' "$r" "$t" "$load" "${f#\{}" >>"$SESS"
      log "round $r sessions $t: $f"
    done
  done
fi
# Make sure the pgward leg actually went through pgward (audit on): it must have audit rows.
AUDIT_ROWS="$(pgwardctl audit list --json --principal "$CLIENT_ID" --limit 3 2>/dev/null | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?")"

# ---- report ------------------------------------------------------------------------------
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
COMMAND="bench/run.sh${ORIG_ARGS:+ $ORIG_ARGS}"
REPORT="$STACK_DIR/report.md"
PGB_VERSION="$(/usr/sbin/pgbouncer --version 2>/dev/null | head -1)"
PG_VERSION="$(psql_admin -At -c 'SHOW server_version' | cut -d' ' -f1)"
GIT_REV="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
export BENCH_COMMAND="$COMMAND" BENCH_GIT="$GIT_REV" BENCH_BUILD_TYPE="${BUILD_TYPE:-unknown}" \
  BENCH_CPU="$CPU_MODEL" BENCH_NPROC="$(nproc)" BENCH_KERNEL="$(uname -sr)" \
  BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')" BENCH_PG="$PG_VERSION" BENCH_PGB="$PGB_VERSION" \
  BENCH_SCALE="$SCALE" BENCH_ROUNDS="$ROUNDS" BENCH_DURATION="$DURATION" BENCH_QUICK="$QUICK" BENCH_AUDIT="$AUDIT_ROWS" \
  BENCH_FLOOR="$FLOOR" BENCH_AUDIT_RATE="$AUDIT_RATE" BENCH_BULK="$BULK" BENCH_SESSIONS_FILE="$SESS" BENCH_BULK_MB="$BULK_MB" \
  BENCH_BULK_ROW_BYTES="$BULK_ROW_BYTES" BENCH_SLOW_MB="$SLOW_MB" BENCH_SLOW_RATE="$SLOW_RATE" \
  BENCH_SESSIONS="$SESSIONS" BENCH_PG_MAX_CONNECTIONS="$PG_MAX_CONNECTIONS"
$PY "$REPO_ROOT/bench/report.py" "$RAW" >"$REPORT" || die "report generation failed (raw data: $RAW)"
cat "$REPORT"
if [ "$WRITE_RESULTS" -eq 1 ]; then
  cp "$REPORT" "$REPO_ROOT/bench/RESULTS.md"
  log "wrote $REPO_ROOT/bench/RESULTS.md"
fi

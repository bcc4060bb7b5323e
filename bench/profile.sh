#!/usr/bin/env bash
# pgward profile: what one statement costs in pgward-gateway and pgward-agent. Starts the bench
# stack (PostgreSQL, test IdP, gateway, agent; no PgBouncer), runs pgbench -S -M prepared at 1 and
# 8 clients and, per scenario, measures CPU and context switches per transaction (clean run, from
# /proc) and samples both processes with perf (a second run). Writes summaries to --out.
# See bench/README.md ("Profiling") and bench/NOTES.md for what the figures say.
set -euo pipefail

usage() {
  cat <<USAGE
usage: bench/profile.sh [--duration S] [--no-perf] [--call-graph dwarf|fp] [--callgrind N] [--out DIR] [--keep-dir]
  --duration S     pgbench -T per run (default 10)
  --no-perf        only the /proc measurement (CPU, context switches per transaction)
  --call-graph M   perf call graphs: dwarf (default) or fp
  --scenarios L    comma-separated subset of c1,c8 (default c1,c8)
  --callgrind N    afterwards, restart the agent under valgrind --tool=callgrind and count its
                   instructions for N one-client transactions (pgbench -t N; slow: try 300)
  --out DIR        where the summaries go (default <build>/profile-<UTC time>)
  --keep-dir       keep the temp work dir (logs, perf.data) after the run
Environment: BUILD_DIR (default <repo>/build, RelWithDebInfo expected), PG_BIN, BENCH_SCALE (default 10)
USAGE
}

DURATION=10
PERF=1
CALL_GRAPH=dwarf
SCENARIOS_ARG=c1,c8
CALLGRIND_TX=0
OUT_DIR=""
KEEP_DIR=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?--duration needs a value}"; shift ;;
    --no-perf) PERF=0 ;;
    --call-graph) CALL_GRAPH="${2:?--call-graph needs a value}"; shift ;;
    --scenarios) SCENARIOS_ARG="${2:?--scenarios needs a value}"; shift ;;
    --callgrind) CALLGRIND_TX="${2:?--callgrind needs a value}"; shift ;;
    --out) OUT_DIR="${2:?--out needs a value}"; shift ;;
    --keep-dir) KEEP_DIR=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "profile: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "profile: --duration must be a positive integer" >&2; exit 2; }
[[ "$CALLGRIND_TX" =~ ^[0-9]+$ ]] || { echo "profile: --callgrind must be a number of transactions" >&2; exit 2; }
[[ "$CALL_GRAPH" =~ ^(dwarf|fp)$ ]] || { echo "profile: --call-graph must be dwarf or fp" >&2; exit 2; }
IFS=, read -r -a SCENARIOS <<<"$SCENARIOS_ARG"
for s in "${SCENARIOS[@]}"; do
  [[ "$s" =~ ^(c1|c8)$ ]] || { echo "profile: unknown scenario '$s' (c1, c8)" >&2; exit 2; }
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
SCALE="${BENCH_SCALE:-10}"
PGBENCH="$PG_BIN/pgbench"
PERF_BIN="${PERF_BIN:-/usr/bin/perf}"
export REPO_ROOT BUILD_DIR PG_BIN
OUT_DIR="${OUT_DIR:-$BUILD_DIR/profile-$(date -u +%Y%m%dT%H%M%SZ)}"

# libpq settings inherited from the caller's shell would redirect the admin and bench connections.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^PG[A-Z]+$' || true)

die() { echo "profile: error: $*" >&2; exit 1; }
log() { printf '\033[1m[profile %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" -eq 0 ] || die "run as root (PostgreSQL runs as the postgres user via runuser; perf attaches to other pids)"
for tool in "$PG_BIN/initdb" "$PGBENCH" node curl openssl psql runuser python3; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool (see deploy/install-deps.sh)"
done
[ "$CALLGRIND_TX" -eq 0 ] || command -v callgrind_control >/dev/null 2>&1 ||
  die "missing valgrind (apt-get install valgrind), or drop --callgrind"
[ "$PERF" -eq 0 ] || [ -x "$PERF_BIN" ] || die "missing $PERF_BIN (apt-get install linux-perf), or use --no-perf"
for bin in gateway/pgward-gateway agent/pgward-agent tools/pgwardctl/pgwardctl; do
  [ -x "$BUILD_DIR/$bin" ] || die "missing $BUILD_DIR/$bin: ninja -C $BUILD_DIR pgward-gateway pgward-agent pgwardctl"
done
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)"
[ "$BUILD_TYPE" = "RelWithDebInfo" ] || [ "$BUILD_TYPE" = "Release" ] ||
  log "WARNING: $BUILD_DIR is a '${BUILD_TYPE:-unknown}' build; figures will not be representative"
mkdir -p "$OUT_DIR"

# ---- work dir, cleanup, stack ----------------------------------------------------------
STACK_DIR="$(mktemp -d /tmp/pgward-profile.XXXXXX)"
chmod 755 "$STACK_DIR"
# shellcheck source=../deploy/lib/stack.sh
source "$REPO_ROOT/deploy/lib/stack.sh"
PERF_PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  stop_stack || true
  if [ "$KEEP_DIR" -eq 1 ] || [ "$rc" -ne 0 ]; then
    echo "profile: work dir (logs, perf data) kept at $STACK_DIR" >&2
  else
    rm -rf "$STACK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting PostgreSQL 15 (fsync=on), the test IdP, pgward-gateway and pgward-agent in $STACK_DIR"
start_postgres "$(free_port)" on || die "PostgreSQL did not start; see $STACK_DIR/pg/postgres.log"
DB_USER=bench
DB_NAME=bench
DB_PASSWORD="$(openssl rand -hex 16)"
psql_admin -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD'"
psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
PGPASSWORD="$DB_PASSWORD" "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB_NAME" \
  >"$STACK_DIR/pgbench-init.log" 2>&1 || die "pgbench -i failed; see $STACK_DIR/pgbench-init.log"

# The same pgward setup as bench/run.sh: audit on, agent -> Postgres without TLS.
CLIENT_ID=bench-client
CLIENT_SECRET="$(openssl rand -hex 12)"
printf '[{"client_id": "%s", "client_secret": "%s", "groups": ["bench"]}]\n' "$CLIENT_ID" "$CLIENT_SECRET" \
  >"$STACK_DIR/clients.json"
start_idp "$STACK_DIR/clients.json" 3600 || die "IdP did not start; see $STACK_DIR/idp.log"
start_gateway || die "gateway did not start; see $STACK_DIR/gateway.log"
GW_PID="$(tail -1 "$STACK_DIR/pids")"
start_agent bench-agent BENCH_DB_PASSWORD="$DB_PASSWORD" || die "agent did not start; see $STACK_DIR/bench-agent.log"
AGENT_PID="$(tail -1 "$STACK_DIR/pids")"
pgwardctl connection create "$DB_NAME" --agent bench-agent --host 127.0.0.1 --port "$PG_PORT" \
  --database "$DB_NAME" --user "$DB_USER" --password-ref agent-env:BENCH_DB_PASSWORD --sslmode disable >/dev/null
pgwardctl grant create --principal "$CLIENT_ID" --connection "$DB_NAME" --mode read-only >/dev/null
TOKEN="$(fetch_token "$CLIENT_ID" "$CLIENT_SECRET")" || die "could not fetch a token from $IDP_ISSUER"
PGWARD_ENV=(PGHOST=127.0.0.1 "PGPORT=$GW_PG_PORT" "PGUSER=$CLIENT_ID" "PGPASSWORD=$TOKEN" "PGDATABASE=$DB_NAME" PGSSLMODE=require)
out="$(env "${PGWARD_ENV[@]}" psql -X -At -c "SELECT count(*) FROM pgbench_branches" 2>&1)" ||
  die "psql through pgward failed: $out"
[ "$out" = "$SCALE" ] || die "expected $SCALE rows in pgbench_branches through pgward, got: $out"

# ---- measurement ----------------------------------------------------------------------
# proc_snapshot PID FILE: one line per live thread: tid, name, utime+stime ticks, voluntary and
# nonvoluntary context switches. /proc/PID/status alone counts only the main thread, so the
# per-process figures are sums over /proc/PID/task/*; the per-thread lines show which thread
# burns the CPU and which one is woken per statement.
proc_snapshot() {
  python3 - "$1" >"$2" <<'PY'
import os, sys
pid = sys.argv[1]
for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
    try:
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        status = open(f"/proc/{pid}/task/{tid}/status").read()
    except OSError:
        continue  # the thread exited between listdir and open
    name = stat[stat.index("(") + 1:stat.rindex(")")].replace(" ", "_")
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    sw = dict(l.split(":\t") for l in status.splitlines() if "ctxt_switches" in l)
    print(tid, name, ticks, int(sw["voluntary_ctxt_switches"]), int(sw["nonvoluntary_ctxt_switches"]))
PY
}

# run_pgbench SCENARIO LOG: prints the number of transactions pgbench processed.
run_pgbench() {
  local args="-n -S -M prepared -c 1 -j 1 -T $DURATION"
  [ "$1" = c8 ] && args="-n -S -M prepared -c 8 -j 2 -T $DURATION"
  # shellcheck disable=SC2086
  env "${PGWARD_ENV[@]}" "$PGBENCH" $args >"$2" 2>&1 || die "pgbench $1 failed; see $2"
  sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$2"
}

SUMMARY="$OUT_DIR/summary.tsv"
printf 'scenario\tprocess\ttx\ttps\tcpu_us_per_tx\tvol_cs_per_tx\tinvol_cs_per_tx\tloadavg_before\n' >"$SUMMARY"
CLK_TCK="$(getconf CLK_TCK)"
for s in "${SCENARIOS[@]}"; do
  # 1. Clean run (no perf attached): CPU and context switches per transaction.
  load="$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
  proc_snapshot "$GW_PID" "$OUT_DIR/$s-gateway.before"; proc_snapshot "$AGENT_PID" "$OUT_DIR/$s-agent.before"
  tx="$(run_pgbench "$s" "$OUT_DIR/$s-pgbench.log")"
  proc_snapshot "$GW_PID" "$OUT_DIR/$s-gateway.after"; proc_snapshot "$AGENT_PID" "$OUT_DIR/$s-agent.after"
  tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$OUT_DIR/$s-pgbench.log")"
  for p in gateway agent; do
    python3 - "$OUT_DIR/$s-$p.before" "$OUT_DIR/$s-$p.after" "$tx" "$CLK_TCK" "$OUT_DIR/$s-$p.threads" <<'PY' |
import sys
def load(path):
    return {l.split()[0]: l.split() for l in open(path) if l.strip()}
before, after = load(sys.argv[1]), load(sys.argv[2])
tx, hz = int(sys.argv[3]), int(sys.argv[4])
tot = [0, 0, 0]
rows = []
for tid, a in after.items():
    b = before.get(tid, [tid, a[1], "0", "0", "0"])  # a thread started during the run
    d = [int(a[i]) - int(b[i]) for i in (2, 3, 4)]
    tot = [x + y for x, y in zip(tot, d)]
    rows.append((d[0], a[1], tid, d))
with open(sys.argv[5], "w") as f:
    f.write("thread\ttid\tcpu_us_per_tx\tvol_cs_per_tx\tinvol_cs_per_tx\n")
    for _, name, tid, d in sorted(rows, reverse=True):
        if any(d):
            f.write(f"{name}\t{tid}\t{d[0] / hz * 1e6 / tx:.1f}\t{d[1] / tx:.2f}\t{d[2] / tx:.2f}\n")
print(f"{tot[0] / hz * 1e6 / tx:.1f}\t{tot[1] / tx:.2f}\t{tot[2] / tx:.2f}")
PY
      while IFS=$'\t' read -r cpu vol invol; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$p" "$tx" "$tps" "$cpu" "$vol" "$invol" "$load" >>"$SUMMARY"
        log "$s $p: tps=$tps cpu=${cpu}us/tx voluntary_cs=${vol}/tx involuntary_cs=${invol}/tx (load $load)"
      done
  done

  # 2. A second run with perf sampling each process (cpu-clock: no hardware counters needed).
  [ "$PERF" -eq 1 ] || continue
  PERF_PIDS=()
  for p in gateway agent; do
    pid="$GW_PID"; [ "$p" = agent ] && pid="$AGENT_PID"
    "$PERF_BIN" record -q -e cpu-clock -F 999 -g --call-graph "$CALL_GRAPH" -p "$pid" \
      -o "$STACK_DIR/$s-$p.perf.data" >"$STACK_DIR/$s-$p.perf.log" 2>&1 &
    PERF_PIDS+=($!)
  done
  sleep 1  # let perf attach to every thread before the load starts
  run_pgbench "$s" "$OUT_DIR/$s-pgbench-perf.log" >/dev/null
  for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${PERF_PIDS[@]}"; do wait "$p" || true; done
  PERF_PIDS=()
  for p in gateway agent; do
    data="$STACK_DIR/$s-$p.perf.data"
    [ -s "$data" ] || die "perf wrote no data for $p; see $STACK_DIR/$s-$p.perf.log"
    log "$s $p: perf report (this takes a while with dwarf call graphs)"
    "$PERF_BIN" report -i "$data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.3 \
      2>/dev/null | grep -v '^$' >"$OUT_DIR/$s-$p.symbols.txt" || true
    "$PERF_BIN" report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null |
      grep -v '^$' >"$OUT_DIR/$s-$p.dsos.txt" || true
    "$PERF_BIN" report -i "$data" --no-children --sort comm --stdio -g none 2>/dev/null |
      grep -v '^$' >"$OUT_DIR/$s-$p.threads-perf.txt" || true
    "$PERF_BIN" script -i "$data" -F comm,tid,ip,sym,dso 2>/dev/null |
      python3 "$REPO_ROOT/bench/profile_buckets.py" >"$OUT_DIR/$s-$p.buckets.txt" ||
      die "bucket summary failed for $s $p"
  done
done

# ---- callgrind: instructions per transaction in the agent ---------------------------------
if [ "$CALLGRIND_TX" -gt 0 ]; then
  # The agent is restarted with the flags start_agent gave it (same token and data dir: the
  # gateway sees a reconnect). Instrumentation is off until the measured pgbench starts, so
  # start-up and the gRPC handshake are not counted; the one session's login is.
  log "restarting the agent under callgrind (slow: expect about 50x the normal cost)"
  kill "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  CG_OUT="$STACK_DIR/callgrind.out"
  env BENCH_DB_PASSWORD="$DB_PASSWORD" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$CG_OUT" "$BUILD_DIR/agent/pgward-agent" --gateway "127.0.0.1:$GW_GRPC_PORT" \
    --name bench-agent --token-file "$STACK_DIR/bench-agent.token" --ca-file "$GW_DIR/tls/gateway.crt" \
    --data-dir "$STACK_DIR/bench-agent-data" --allow-upstream "127.0.0.1:$PG_PORT" \
    --allow-credential agent-env:BENCH_DB_PASSWORD >"$STACK_DIR/bench-agent-callgrind.log" 2>&1 &
  AGENT_PID=$!
  record_pid "$AGENT_PID"
  deadline=$((SECONDS + 180))
  until pgwardctl agent list --json | python3 -c "import json,sys; sys.exit(0 if any(a['name']=='bench-agent' and a['online'] for a in json.load(sys.stdin)) else 1)"; do
    [ $SECONDS -lt $deadline ] || die "the agent did not come online under callgrind; see $STACK_DIR/bench-agent-callgrind.log"
    sleep 1
  done
  callgrind_control -i on "$AGENT_PID" >/dev/null || die "callgrind_control -i on failed"
  env "${PGWARD_ENV[@]}" "$PGBENCH" -n -S -M prepared -c 1 -j 1 -t "$CALLGRIND_TX" \
    >"$OUT_DIR/callgrind-pgbench.log" 2>&1 || die "pgbench under callgrind failed; see $OUT_DIR/callgrind-pgbench.log"
  callgrind_control -i off "$AGENT_PID" >/dev/null || true
  kill "$AGENT_PID"  # callgrind writes its output at exit
  wait "$AGENT_PID" 2>/dev/null || true
  [ -s "$CG_OUT" ] || die "callgrind wrote no output; see $STACK_DIR/bench-agent-callgrind.log"
  for mode in no yes; do
    callgrind_annotate --inclusive="$mode" --threshold=99 "$CG_OUT" 2>/dev/null | head -80 \
      >"$OUT_DIR/callgrind-agent.inclusive-$mode.txt" || true
  done
  # Instructions per shared object (the agent binary holds pgward, asio and libpg_query).
  callgrind_annotate --inclusive=no --threshold=100 "$CG_OUT" 2>/dev/null | python3 -c '
import re, sys, collections
per = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([0-9,]+) \(\s*[0-9.]+%\)\s+.*\[(.*)\]\s*$", line)
    if m:
        per[m.group(2).rsplit("/", 1)[-1]] += int(m.group(1).replace(",", ""))
total = sum(per.values()) or 1
for dso, n in per.most_common(15):
    print(f"{100.0 * n / total:6.1f}%  {n:>14,}  {dso}")
' >"$OUT_DIR/callgrind-agent.dsos.txt" || true
  # PROGRAM TOTALS, and the SCRAM key derivation of the one upstream login (PBKDF2, 4096
  # rounds: half of all instructions at 300 transactions), which is set apart per transaction.
  total="$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$OUT_DIR/callgrind-agent.inclusive-no.txt" | tr -d , | head -1)"
  login="$(grep -m1 'ScramSha256Client::HandleServerFirst' "$OUT_DIR/callgrind-agent.inclusive-yes.txt" |
    awk '{gsub(",", "", $1); print $1}')"
  awk -v t="${total:-0}" -v l="${login:-0}" -v n="$CALLGRIND_TX" 'BEGIN {
    printf "agent instructions (callgrind Ir), %d one-client transactions: %d in all, %d per transaction;\n", n, t, t / n
    printf "without the session login SCRAM derivation (%d): %d per transaction\n", l, (t - l) / n }' |
    tee "$OUT_DIR/callgrind-agent.txt"
fi

{
  echo "# pgward profile $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), build ${BUILD_TYPE:-unknown} ($BUILD_DIR), nproc $(nproc), -T $DURATION, perf $PERF ($CALL_GRAPH)"
  echo
  column -t -s $'\t' "$SUMMARY"
} >"$OUT_DIR/README.txt"
cat "$OUT_DIR/README.txt"
log "summaries in $OUT_DIR (summary.tsv, *.threads, *.symbols.txt, *.dsos.txt, *.buckets.txt)"

"""Lossless audit across SIGKILLs (issue 7).

pgbench runs through pgward while the gateway (case 1) or the agent (case 2) is killed with
SIGKILL and started again on the same data dir and ports, then runs again. Per principal, the
statements Postgres received (its log: the harness runs it with ``log_statement = 'all'`` and
``log_line_prefix = '%m [%p] app=%a user=%u db=%d '``; the agent logs in with
``application_name = pgward:<principal>``) must equal the audit rows: none missing, none twice.
An audit row with no Postgres log line may exist only with ``outcome = unknown`` (the agent
recorded the statement but died before it reached Postgres / before its result came back).

How statements are matched. Audit text is normalized (literals become $n) and pgwardctl has no
grant option to capture literals, so every statement of the pgbench script carries a comment
``/* ll r=<run> c=<client> n=<transaction> s=<statement> */`` built from pgbench variables.
Comments are neither constants nor tokens: pg_query_normalize keeps them and Postgres logs them,
so both sides name the same statement exactly. (A side effect: no two texts share a shape, so
the agent's shape cache is never reused and every statement gets a full analysis.)

Scope. Each test uses an isolated gateway (its own agent), its own database (dropped at the end)
and two principals of its own (tokens minted with the IdP's key), so the lines it reads in the
shared Postgres log are its own by ``app=`` and ``db=``; statements pgward sends itself (session
setup on a pooled connection, ``DISCARD ALL``, identity checks) carry no marker and are left out
(counted as ``internal``).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import time
from pathlib import Path

from pgward_harness import PG_BIN, unique, wait_until

CLIENTS_PER_PRINCIPAL = 2
KILL_AFTER_STATEMENTS = 1000  # marked statements in the Postgres log (all principals) before the kill
AFTER_RESTART_SECONDS = 3    # the second pgbench run, after the restart
EXPECTED_PREFIX = "%m [%p] app=%a user=%u db=%d "

# One pgbench transaction: the TPC-B-like statements, each marked. :n counts the client's
# transactions (-D n=0), :run tells the pgbench runs apart (-D run=K), :client_id is pgbench's.
SCRIPT = """\
\\set n :n + 1
\\set aid random(1, 1000)
\\set tid random(1, 10)
\\set delta random(-5000, 5000)
BEGIN /* ll r=:run c=:client_id n=:n s=1 */;
UPDATE ll_accounts SET abalance = abalance + :delta WHERE aid = :aid /* ll r=:run c=:client_id n=:n s=2 */;
SELECT abalance FROM ll_accounts WHERE aid = :aid /* ll r=:run c=:client_id n=:n s=3 */;
UPDATE ll_tellers SET tbalance = tbalance + :delta WHERE tid = :tid /* ll r=:run c=:client_id n=:n s=4 */;
UPDATE ll_branches SET bbalance = bbalance + :delta WHERE bid = 1 /* ll r=:run c=:client_id n=:n s=5 */;
INSERT INTO ll_history (tid, bid, aid, delta, mtime) VALUES (:tid, 1, :aid, :delta, CURRENT_TIMESTAMP) /* ll r=:run c=:client_id n=:n s=6 */;
END /* ll r=:run c=:client_id n=:n s=7 */;
"""

SCHEMA = """
CREATE TABLE ll_branches (bid int PRIMARY KEY, bbalance int NOT NULL);
CREATE TABLE ll_tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL);
CREATE TABLE ll_accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL);
CREATE TABLE ll_history (tid int, bid int, aid int, delta int, mtime timestamptz);
INSERT INTO ll_branches VALUES (1, 0);
INSERT INTO ll_tellers SELECT g, 1, 0 FROM generate_series(1, 10) g;
INSERT INTO ll_accounts SELECT g, 1, 0 FROM generate_series(1, 1000) g;
"""

MARKER = re.compile(r"/\* ll r=(\d+) c=(\d+) n=(\d+) s=(\d+) \*/")
# '%m [%p] app=%a user=%u db=%d ' then "LOG:  statement: <text>" (log_statement = all, simple protocol)
PG_STATEMENT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[(\d+)\] app=(\S*) user=(\S*) db=(\S*) "
                          r"LOG:  statement: (.*)$")


# ---------------------------------------------------------------------------------------------
# helpers


class LosslessDb:
    """A database of the test's own (owned by app, tables for the script), a connection to it on
    `env`'s agent, and principals of its own granted read-write on it."""

    def __init__(self, stack, env, principals: list[str]):
        self.stack = stack
        self.env = env
        self.name = unique("lossless_")
        self.connection = unique("ll_")
        self.principals = principals
        self.tokens: dict[str, str] = {}

    def __enter__(self) -> "LosslessDb":
        prefix = self.stack.pg_sql("SHOW log_line_prefix", dbname="postgres")[0][0]
        assert prefix == EXPECTED_PREFIX, (
            f"the test Postgres runs with log_line_prefix {prefix!r}; this test parses {EXPECTED_PREFIX!r}")
        self.stack.pg_sql(f"CREATE DATABASE {self.name} OWNER app", dbname="postgres")
        # The harness's postgresql.conf already says log_statement = 'all'; this scopes it to the
        # test's database too, so the test holds even if the server-wide default changes.
        self.stack.pg_sql(f"ALTER DATABASE {self.name} SET log_statement = 'all'", dbname="postgres")
        self.stack.pg_sql(SCHEMA, dbname=self.name, user="app")
        self.env.create_connection(self.connection, self.env.agent.name, database=self.name)
        for p in self.principals:
            self.env.grant(p, self.connection, "read-write")
            self.tokens[p] = self.env.mint_token(p, ttl=900)
        return self

    def __exit__(self, *exc) -> None:
        # WITH (FORCE): the agent's pool may still hold idle upstream connections to it.
        try:
            self.stack.pg_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", dbname="postgres")
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the test's own failure
            print(f"dropping {self.name} failed: {e}")

    def dsn(self, principal: str) -> str:
        return self.env.dsn(principal, token=self.tokens[principal], dbname=self.connection)


class Bench:
    """One pgbench process (-M simple, the marked script) for one principal."""

    def __init__(self, db: LosslessDb, principal: str, run: int, seconds: int, script: Path):
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        self.principal = principal
        self.run = run
        self.argv = [str(PG_BIN / "pgbench"), "-n", "-M", "simple", "-c", str(CLIENTS_PER_PRINCIPAL), "-j", "1",
                     "-T", str(seconds), "-f", str(script), "-D", f"run={run}", "-D", "n=0", db.dsn(principal)]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out = self.err = ""

    def wait(self, timeout: float) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pgbench run {self.run} of {self.principal} still running {timeout} s later") from None
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def describe(self) -> str:
        processed = re.search(r"number of transactions actually processed: (\d+)", self.out)
        return (f"pgbench run {self.run} {self.principal}: rc={self.proc.returncode} "
                f"processed={processed.group(1) if processed else '?'} "
                f"stderr tail: {self.err.strip()[-300:]!r}")


def pg_statements(stack, since: int, db: str) -> dict[str, list[tuple]]:
    """app name -> [(pid, text)] of the `statement:` lines for database `db` after byte offset `since`.
    Continuation lines (multi-line statements) are not needed: every statement here is one line."""
    out: dict[str, list[tuple]] = collections.defaultdict(list)
    for line in stack.pg_log(since).splitlines():
        m = PG_STATEMENT.match(line)
        if m and m.group(4) == db:
            out[m.group(2)].append((int(m.group(1)), m.group(5)))
    return out


def marked_count(stack, since: int, db: str) -> int:
    return sum(1 for rows in pg_statements(stack, since, db).values() for _, text in rows if MARKER.search(text))


def audit_rows(env, principal: str, connection: str) -> list[dict]:
    r = env.ctl("audit", "export", "--principal", principal, "--connection", connection, "--format", "jsonl",
                timeout=120)
    assert r.returncode == 0, f"audit export failed: {r.stderr}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def settle_audit(env, db: LosslessDb, expected: dict[str, int], timeout: float = 30) -> dict[str, list[dict]]:
    """Polls the audit trail until every principal has at least `expected[p]` marked rows and the
    counts have not moved for 1 s, or they have not moved for 5 s (a loss never fills in), or
    `timeout` passes. Returns the last rows per principal."""
    deadline = time.monotonic() + timeout
    last: tuple | None = None
    stable_since = time.monotonic()
    while True:
        rows = {p: audit_rows(env, p, db.connection) for p in db.principals}
        counts = tuple(sum(1 for r in rows[p] if MARKER.search(r.get("statement", ""))) for p in db.principals)
        now = time.monotonic()
        if counts != last:
            last, stable_since = counts, now
        enough = all(c >= expected[p] for c, p in zip(counts, db.principals))
        if (enough and now - stable_since >= 1.0) or now - stable_since >= 5.0 or now >= deadline:
            return rows
        time.sleep(0.3)


def marker_key(text: str):
    m = MARKER.search(text)
    return tuple(int(g) for g in m.groups()) if m else None


def compare(label: str, db: LosslessDb, pg: dict[str, list[tuple]], audit: dict[str, list[dict]]) -> tuple[str, list[str]]:
    """Per principal: Postgres's marked statements vs the marked audit rows, as multisets.
    Returns (summary line, list of violations)."""
    totals = collections.Counter()
    violations: list[str] = []
    details: list[str] = []
    for p in db.principals:
        logged = pg.get(f"pgward:{p}", [])
        pg_keys = collections.Counter(k for k in (marker_key(t) for _, t in logged) if k)
        internal = collections.Counter(re.sub(r"'[^']*'", "'...'", t) for _, t in logged if not marker_key(t))
        # The last marked statement of the kill's run on each backend: the one in flight when the kill
        # ended its session (or the last one it completed).
        last_on_pid: dict[int, tuple] = {}
        for pid, t in logged:
            k = marker_key(t)
            if k and k[0] == 1:
                last_on_pid[pid] = k
        at_kill = set(last_on_pid.values())
        rows = audit[p]
        marked_rows = [r for r in rows if marker_key(r.get("statement", ""))]
        unmarked_rows = [r for r in rows if not marker_key(r.get("statement", ""))]
        audit_keys = collections.Counter(marker_key(r["statement"]) for r in marked_rows)
        by_key: dict[tuple, list[dict]] = collections.defaultdict(list)
        for r in marked_rows:
            by_key[marker_key(r["statement"])].append(r)

        missing = {k: n - audit_keys.get(k, 0) for k, n in pg_keys.items() if n > audit_keys.get(k, 0)}
        twice = {k: n - 1 for k, n in audit_keys.items() if n > 1}
        extra = {k: by_key[k] for k in audit_keys if k not in pg_keys}
        extra_known = {k: rs for k, rs in extra.items() if any(r.get("outcome") != "unknown" for r in rs)}
        same_event = collections.Counter((r.get("session_id"), r.get("time"), r.get("statement")) for r in rows)
        same_event_dups = {k: n for k, n in same_event.items() if n > 1}
        unknown = sum(1 for r in rows if r.get("outcome") == "unknown")
        pg_twice = {k: n for k, n in pg_keys.items() if n > 1}  # pgbench never repeats a marker
        outcomes = collections.Counter(str(r.get("outcome")) for r in marked_rows)

        n_missing, n_twice = sum(missing.values()), sum(twice.values())
        n_missing_at_kill = sum(n for k, n in missing.items() if k in at_kill)
        totals.update(postgres=sum(pg_keys.values()), audit=len(marked_rows), missing=n_missing, twice=n_twice,
                      unknown=unknown, extra=len(extra), internal=sum(internal.values()),
                      unmarked_audit=len(unmarked_rows), missing_at_kill=n_missing_at_kill)
        details.append(f"  {p}: postgres={sum(pg_keys.values())} audit={len(marked_rows)} missing={n_missing} "
                       f"(last its backend received before the kill: {n_missing_at_kill}) twice={n_twice} unknown={unknown} extra={len(extra)} (not unknown: {len(extra_known)}) "
                       f"same-event-dups={len(same_event_dups)} internal(pg, unmarked)={dict(internal)} "
                       f"unmarked audit rows={len(unmarked_rows)} outcomes={dict(outcomes)} "
                       f"runs={sorted({k[0] for k in pg_keys})}")

        def sample(d) -> str:
            return ", ".join(f"r{k[0]} c{k[1]} n{k[2]} s{k[3]}" for k in sorted(d)[:10])
        if not pg_keys:
            violations.append(f"{p}: Postgres logged no marked statement (the load did not run)")
        if missing:
            violations.append(f"{p}: {n_missing} statement(s) Postgres ran have no audit row (missing; {n_missing_at_kill} "
                              f"of them the last one its backend received before the kill), e.g. {sample(missing)}"
                              + "".join(f"\n    pid {pid}: {text}" for pid, text in
                                        [(pid, t) for pid, t in logged if marker_key(t) in missing][:10]))
        if twice:
            violations.append(f"{p}: {n_twice} audit row(s) recorded twice, e.g. {sample(twice)}")
        if same_event_dups:
            violations.append(f"{p}: {len(same_event_dups)} (session_id, time, statement) stored more than once: "
                              f"{list(same_event_dups)[:3]}")
        if extra_known:
            shown = [{f: r.get(f) for f in ("id", "session_id", "time", "statement", "sqlstate", "outcome")}
                     for rs in list(extra_known.values())[:3] for r in rs]
            violations.append(f"{p}: {len(extra_known)} audit row(s) for statements Postgres never logged, "
                              f"with an outcome other than 'unknown': {shown}")
        if pg_twice:
            violations.append(f"{p}: Postgres logged a marker more than once (test script broken): {sample(pg_twice)}")
    summary = (f"lossless {label}: postgres={totals['postgres']} audit={totals['audit']} missing={totals['missing']} "
               f"twice={totals['twice']} unknown={totals['unknown']} extra={totals['extra']} "
               f"internal={totals['internal']} missing_last_before_kill={totals['missing_at_kill']}")
    return summary + "\n" + "\n".join(details), violations


def run_kill_restart(stack, env, tmp_path: Path, label: str, kill, restart) -> None:
    principals = [unique("ll-a"), unique("ll-b")]
    script = tmp_path / "lossless.sql"
    script.write_text(SCRIPT)
    benches: list[Bench] = []
    with LosslessDb(stack, env, principals) as db:
        try:
            mark = stack.pg_log_mark()
            # Run 1: long enough that the kill lands in the middle of it.
            run1 = [Bench(db, p, 1, 60, script) for p in principals]
            benches += run1

            def loaded():
                for b in run1:
                    if b.proc.poll() is not None:
                        b.wait(5)
                        raise AssertionError(f"pgbench ended before the kill: {b.describe()}")
                return marked_count(stack, mark, db.name) >= KILL_AFTER_STATEMENTS
            wait_until(loaded, 40, interval=0.1, what=f"{KILL_AFTER_STATEMENTS} marked statements in the Postgres log")
            kill()
            killed_at = marked_count(stack, mark, db.name)
            for b in run1:
                b.wait(30)  # its clients abort once their connections die (rc 2)
            restart()
            # Run 2: after the restart, through the same gateway and agent.
            run2 = [Bench(db, p, 2, AFTER_RESTART_SECONDS, script) for p in principals]
            benches += run2
            for b in run2:
                b.wait(AFTER_RESTART_SECONDS + 30)
            pg = pg_statements(stack, mark, db.name)
            expected = {p: sum(1 for _, t in pg.get(f"pgward:{p}", []) if marker_key(t)) for p in principals}
            audit = settle_audit(env, db, expected)
            summary, violations = compare(label, db, pg, audit)
            benches_text = "\n".join(b.describe() for b in benches)
            print(f"\n{summary}\n(kill after {killed_at} marked statements)\n{benches_text}")
            after_restart = sum(1 for rows in pg.values() for _, t in rows if (marker_key(t) or (0,))[0] == 2)
            assert after_restart > 0, f"no statement ran after the restart:\n{benches_text}"
            assert not violations, f"{summary}\n" + "\n".join(violations) + f"\n{benches_text}"
        finally:
            for b in benches:
                b.stop()


# ---------------------------------------------------------------------------------------------
# tests


def test_audit_is_lossless_across_a_gateway_sigkill(stack, isolated_gateway, tmp_path):
    """The agent keeps unacknowledged events and resends them once it is connected again; the
    gateway stores each (agent, boot_id, seq) once. The statements running upstream when the
    gateway died (their sessions end with it) must have a row too: outcome unknown, or their real one."""
    env = isolated_gateway(grants=())

    def restart():
        env.gateway.start()
        env.agent.wait_online(True, timeout=30)
    run_kill_restart(stack, env, tmp_path, "gateway-kill", env.gateway.kill, restart)


def test_audit_is_lossless_across_an_agent_sigkill(stack, isolated_gateway, tmp_path):
    """Events the killed agent had not had acknowledged must survive it (its data dir), and a
    statement whose result never came back is recorded with outcome unknown."""
    env = isolated_gateway(grants=())

    def restart():
        env.agent.wait_online(False, timeout=15)
        env.agent.start()  # same --data-dir; waits until online
    run_kill_restart(stack, env, tmp_path, "agent-kill", env.agent.kill, restart)

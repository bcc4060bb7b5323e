"""Attribution and audit through pgward: per-statement audit rows (ARCHITECTURE.md section 5),
the principal inside Postgres (application_name, pgward.* settings, the Postgres log), policy
refusals recorded as denied, and session records."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from pgward_harness import session_id_of, unique, wait_until

AUDIT_KEYS = ["id", "time", "session_id", "principal", "issuer", "connection", "agent", "client_addr",
              "protocol", "statement", "fingerprint", "command_tag", "rows", "sqlstate", "error",
              "duration_us", "decision", "rule", "reviewer", "outcome"]


@pytest.fixture
def table(stack):
    name = unique("t_audit_")
    stack.pg_sql(f"CREATE TABLE {name} (id serial PRIMARY KEY, n int)", user="app")
    yield name
    stack.pg_sql(f"DROP TABLE IF EXISTS {name}", user="app")


# ---- two principals at once ----------------------------------------------------------


def _workload(stack, client: str, tag: str, table: str, rounds: int, barrier: threading.Barrier,
              results: dict) -> None:
    try:
        with stack.connect(client) as conn:
            results[client] = {"session": session_id_of(conn)}
            barrier.wait(10)
            for i in range(rounds):
                # simple protocol (no parameters): literals must come back as $n
                rows = conn.execute(f"SELECT id AS {tag}_simple FROM customers WHERE id = {1 + i % 3}").fetchall()
                assert len(rows) == 1
                # extended protocol (server-side parameters)
                rows = conn.execute(f"SELECT name AS {tag}_ext FROM customers WHERE id > %s", (1,)).fetchall()
                assert len(rows) == 2
                conn.execute(f"INSERT INTO {table} (n) SELECT g AS {tag}_ins FROM generate_series(1, 3) g")
                with pytest.raises(psycopg.errors.DivisionByZero):
                    conn.execute(f"SELECT 1/0 AS {tag}_div")
            results[client]["done"] = True
    except BaseException as exc:  # surfaced by the main thread
        results.setdefault(client, {})["error"] = exc


def test_two_principals_in_parallel_are_attributed(stack, table):
    rounds = 5
    tags = {"alice-bot": unique("alice_"), "bob-bot": unique("bob_")}
    start = time.time()
    barrier = threading.Barrier(2)
    results: dict = {}
    threads = [threading.Thread(target=_workload, args=(stack, c, tags[c], table, rounds, barrier, results))
               for c in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for client in tags:
        assert "error" not in results.get(client, {}), f"{client}: {results[client]['error']!r}"
        assert results[client].get("done"), f"{client} did not finish: {results.get(client)}"
    assert stack.pg_sql(f"SELECT count(*) FROM {table}")[0][0] == 2 * rounds * 3

    for client, tag in tags.items():
        other = [t for c, t in tags.items() if c != client][0]
        rows = stack.wait_audit(
            lambda rs: (lambda mine: mine if len(mine) >= 4 * rounds else None)(
                [r for r in rs if tag in r["statement"]]), principal=client)
        assert len(rows) == 4 * rounds, f"{client}: expected {4 * rounds} audit rows, got {len(rows)}"
        assert not any(other in r["statement"] for r in rows), "another principal's statement in this audit"
        for r in rows:
            assert r["principal"] == client
            assert r["session_id"] == results[client]["session"]
            assert r["connection"] == "shop" and r["agent"] == "db1"
            assert r["issuer"] == stack.issuer
            assert r["client_addr"] == "127.0.0.1"
            assert r["rule"], "the grant that allowed the statement must be named"
            assert r["fingerprint"]
            assert isinstance(r["duration_us"], int) and r["duration_us"] >= 0
            assert r["reviewer"] == ""
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", r["time"]), r["time"]

        by_kind = {k: [r for r in rows if f"{tag}_{k}" in r["statement"]] for k in ("simple", "ext", "ins", "div")}
        assert all(len(v) == rounds for v in by_kind.values()), {k: len(v) for k, v in by_kind.items()}

        for r in by_kind["simple"]:
            assert r["protocol"] == "simple"
            assert r["statement"] == f"SELECT id AS {tag}_simple FROM customers WHERE id = $1", r["statement"]
            assert (r["command_tag"], r["rows"], r["sqlstate"], r["decision"]) == ("SELECT 1", 1, "", "allowed")
        assert len({r["fingerprint"] for r in by_kind["simple"]}) == 1, \
            "same statement shape with different literals must share a fingerprint"

        for r in by_kind["ext"]:
            assert r["protocol"] == "extended"
            assert r["statement"] == f"SELECT name AS {tag}_ext FROM customers WHERE id > $1", r["statement"]
            assert (r["command_tag"], r["rows"], r["sqlstate"], r["decision"]) == ("SELECT 2", 2, "", "allowed")

        for r in by_kind["ins"]:
            assert r["protocol"] == "simple"
            assert "$1" in r["statement"] and "$2" in r["statement"], r["statement"]
            assert (r["command_tag"], r["rows"], r["decision"]) == ("INSERT 0 3", 3, "allowed")

        for r in by_kind["div"]:
            assert r["statement"] == f"SELECT $1/$2 AS {tag}_div", r["statement"]
            assert r["sqlstate"] == "22012" and "division by zero" in r["error"]
            assert r["decision"] == "allowed" and r["command_tag"] == ""

        # Audit ids grow in statement order within the session.
        ordered = sorted(rows, key=lambda r: r["id"])
        assert [r["statement"].split(" AS ")[1].split()[0] for r in ordered[:4]] == \
            [f"{tag}_simple", f"{tag}_ext", f"{tag}_ins", f"{tag}_div"]
        assert all(r["time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start - 5)) for r in rows)


def test_multi_statement_query_gives_one_row_per_statement(stack):
    tag = unique("multi_")
    r = stack.psql("bob-bot", f"SELECT 1 AS {tag}_a; SELECT name AS {tag}_b FROM customers WHERE id < 3")
    assert r.returncode == 0, r.stderr
    rows = stack.wait_audit_rows(lambda r: tag in r["statement"], count=2, principal="bob-bot")
    assert [x["statement"] for x in rows] == [f"SELECT $1 AS {tag}_a",
                                             f"SELECT name AS {tag}_b FROM customers WHERE id < $1"]
    assert [x["rows"] for x in rows] == [1, 2]
    assert {x["protocol"] for x in rows} == {"simple"}
    assert rows[0]["session_id"] == rows[1]["session_id"]


def test_copy_out_is_audited_with_row_count(stack):
    tag = unique("copy_")
    with stack.connect("alice-bot") as conn, conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT id AS {tag} FROM customers) TO STDOUT") as copy:
            assert len(list(copy.rows())) == 3
    rows = stack.wait_audit_rows(lambda r: tag in r["statement"], principal="alice-bot")
    assert (rows[0]["command_tag"], rows[0]["rows"], rows[0]["decision"]) == ("COPY 3", 3, "allowed")


# ---- policy refusal ------------------------------------------------------------------


def test_read_only_principal_update_is_denied_and_session_continues(stack):
    tag = unique("ro_")
    mark = stack.pg_log_mark()
    with stack.connect("grp-bot") as conn:
        sid = session_id_of(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as exc:
            conn.execute(f"UPDATE customers AS {tag} SET name = 'pwned' WHERE {tag}.id = 1")
        assert exc.value.sqlstate == "42501"
        # the extended protocol is refused the same way
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM orders AS {tag} WHERE {tag}.id = %s", (1,))
        # the session goes on
        assert conn.execute("SELECT name FROM customers WHERE id = %s", (1,)).fetchone() == ("Ada",)
        assert conn.execute(f"SELECT count(*) AS {tag}_after FROM orders").fetchone()[0] >= 4
    assert stack.pg_sql("SELECT name FROM customers WHERE id = 1") == [("Ada",)]
    rows = stack.wait_audit_rows(lambda r: tag in r["statement"], count=3, principal="grp-bot")
    upd, dele, after = rows
    for r, proto in ((upd, "simple"), (dele, "extended")):
        assert r["decision"] == "denied" and r["sqlstate"] == "42501", r
        assert r["protocol"] == proto
        assert r["session_id"] == sid and r["principal"] == "grp-bot"
        assert r["error"], "a denied row says why"
    assert upd["statement"] == f"UPDATE customers AS {tag} SET name = $1 WHERE {tag}.id = $2", upd["statement"]
    assert dele["statement"] == f"DELETE FROM orders AS {tag} WHERE {tag}.id = $1", dele["statement"]
    assert after["decision"] == "allowed" and after["rows"] == 1
    # A refused statement never reaches Postgres.
    log = stack.pg_log(mark)
    assert "pwned" not in log and f"DELETE FROM orders AS {tag}" not in log, "a refused statement reached Postgres"
    assert f"{tag}_after" in log


# ---- the principal inside Postgres ---------------------------------------------------


def test_postgres_log_attributes_every_statement(stack):
    mark = stack.pg_log_mark()
    tags = {c: unique(c.split("-")[0] + "_log_") for c in ("alice-bot", "bob-bot", "grp-bot")}
    for client, tag in tags.items():
        assert stack.psql(client, f"SELECT 1 AS {tag}").returncode == 0
        with stack.connect(client) as conn:
            conn.execute(f"SELECT %s::int AS {tag}_ext", (5,))

    def logged():
        log = stack.pg_log(mark)
        return log if all(f"{t}_ext" in log for t in tags.values()) else None
    log = wait_until(logged, 10, what="statements in the Postgres log")
    lines = log.splitlines()
    for client, tag in tags.items():
        mine = [ln for ln in lines if tag in ln and ("statement:" in ln or "execute" in ln)]
        assert len(mine) >= 2, f"{client}'s statements missing from the Postgres log:\n{log[-2000:]}"
        for ln in mine:
            assert f"app=pgward:{client} " in ln, f"statement not attributed to {client}: {ln}"


def test_show_application_name_and_pgward_settings(stack):
    for client in ("alice-bot", "grp-bot"):
        with stack.connect(client, application_name="caller-chosen") as conn:
            assert conn.execute("SHOW application_name").fetchone() == (f"pgward:{client}",)
            assert conn.execute("SELECT current_setting('pgward.principal')").fetchone() == (client,)
            sid = session_id_of(conn)
            assert re.fullmatch(r"[0-9a-f]{16,}", sid), sid
            # pg_stat_activity sees it too (what a DBA looks at; principals may not read it)
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert stack.pg_sql("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                                params=(pid,)) == [(f"pgward:{client}",)]
        sessions = stack.wait_sessions(lambda ss: [s for s in ss if s["session_id"] == sid] or None,
                                       principal=client)
        assert sessions[0]["application_name"] == "caller-chosen", \
            "the session record keeps the caller's own application_name"
    out = stack.psql("bob-bot", "SHOW application_name")
    assert out.returncode == 0 and out.stdout.strip() == "pgward:bob-bot"


IDENTITY_CHANGES = [
    "SET pgward.principal = 'bob-bot'",
    "SET pgward.session_id = 'x'",
    "SELECT set_config('pgward.principal', 'bob-bot', false)",
    "SELECT set_config('application_name', 'evil', false)",
    "RESET application_name",
    "RESET pgward.principal",
]


def test_identity_settings_cannot_be_changed(stack):
    with stack.connect("alice-bot") as conn:
        sid = session_id_of(conn)
        for sql in IDENTITY_CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgward"):
                conn.execute(sql)
        # parameters instead of literals: the agent cannot see the values, it must still refuse
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT set_config(%s, %s, false)", ("pgward.principal", "bob-bot"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("BEGIN; SET LOCAL application_name = 'evil'; COMMIT")
        conn.execute("ROLLBACK")  # harmless if no transaction is open
        # session-wide resets must not wipe the identity either
        for sql in ("RESET ALL", "DISCARD ALL"):
            try:
                conn.execute(sql)
            except psycopg.errors.InsufficientPrivilege:
                pass
            got = conn.execute("SELECT current_setting('application_name'), current_setting('pgward.principal'),"
                               " current_setting('pgward.session_id')").fetchone()
            assert got == ("pgward:alice-bot", "alice-bot", sid), f"after {sql}: {got}"
        assert conn.execute("SHOW application_name").fetchone() == ("pgward:alice-bot",)
    rows = stack.wait_audit(lambda rs: (lambda d: d if len(d) >= len(IDENTITY_CHANGES) + 2 else None)(
        [r for r in rs if r["decision"] == "denied"]), session=sid)
    assert all(r["sqlstate"] == "42501" for r in rows)


@pytest.mark.parametrize("sql", ["SET application_name = 'PostgreSQL JDBC Driver'",
                                 "set session application_name to 'evil'"])
def test_plain_application_name_set_succeeds_but_keeps_the_pgward_identity(stack, sql):
    # Drivers (pgJDBC) set application_name after login; the agent rewrites such a SET to the
    # value pgward owns, so the driver sees success and the attribution stays.
    with stack.connect("alice-bot") as conn:
        conn.execute(sql)
        assert conn.execute("SHOW application_name").fetchone() == ("pgward:alice-bot",)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert stack.pg_sql("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                            params=(pid,)) == [("pgward:alice-bot",)]
        # the extended protocol takes the same path (psycopg sends parameters via Parse/Bind)
        conn.execute("SET application_name = 'evil'", prepare=True)
        assert conn.execute("SHOW application_name").fetchone() == ("pgward:alice-bot",)


# ---- sessions ------------------------------------------------------------------------


def test_session_list_shows_sessions_and_end_reasons(stack):
    with stack.connect("bob-bot") as conn:
        sid = session_id_of(conn)
        conn.execute("SELECT 1")
        active = stack.wait_sessions(lambda ss: [s for s in ss if s["session_id"] == sid] or None,
                                     principal="bob-bot", active=True)[0]
        assert active["ended"] is None and active["end_reason"] == ""
        assert active["principal"] == "bob-bot" and active["connection"] == "shop" and active["agent"] == "db1"
        assert active["client_addr"] == "127.0.0.1" and active["issuer"] == stack.issuer
    ended = stack.wait_sessions(lambda ss: [s for s in ss if s["session_id"] == sid and s["ended"]] or None,
                                principal="bob-bot")[0]
    assert ended["end_reason"] in ("client_disconnect", "client_terminate"), \
        f"a caller that closed its connection (Terminate) is recorded as {ended['end_reason']!r}: {ended}"
    assert ended["statements"] == 2, ended
    assert ended["started"] <= ended["ended"]
    assert sid not in {s["session_id"] for s in stack.sessions(active=True)}

    # psql: one more session, ended the same way
    tag = unique("sess_")
    assert stack.psql("bob-bot", f"SELECT 1 AS {tag}").returncode == 0
    row = stack.wait_audit_rows(lambda r: tag in r["statement"], principal="bob-bot")[0]
    s = stack.wait_sessions(lambda ss: [x for x in ss if x["session_id"] == row["session_id"] and x["ended"]] or None)[0]
    assert s["application_name"] == "psql" and s["statements"] == 1
    assert s["end_reason"] in ("client_disconnect", "client_terminate"), \
        f"psql quit (Terminate) but the session is recorded as {s['end_reason']!r}: {s}"


def test_session_kill_ends_the_session(stack):
    conn = stack.connect("alice-bot")
    try:
        sid = session_id_of(conn)
        r = stack.ctl("session", "kill", sid)
        assert r.returncode == 0, r.stderr
        # the kill is asynchronous: poll until the connection is gone
        deadline = time.monotonic() + 10
        error = None
        while error is None and time.monotonic() < deadline:
            try:
                conn.execute("SELECT 1")
                time.sleep(0.05)
            except psycopg.OperationalError as exc:
                error = exc
        assert error is not None, "the session still answers 10 s after `session kill`"
        assert error.sqlstate in (None, "57P01"), f"killed session: {error.sqlstate} {error}"
    finally:
        conn.close()
    s = stack.wait_sessions(lambda ss: [x for x in ss if x["session_id"] == sid and x["ended"]] or None)[0]
    assert s["end_reason"] and s["end_reason"] not in ("client_disconnect", "client_terminate"), s


# ---- the JSON contract ---------------------------------------------------------------


def test_audit_json_has_exactly_the_contract_keys(stack):
    assert stack.psql("alice-bot", "SELECT 1").returncode == 0
    rows = stack.wait_audit(lambda rs: rs or None)
    for r in rows:
        assert list(r.keys()) == AUDIT_KEYS, f"audit row keys differ from ARCHITECTURE.md section 5: {list(r)}"
        assert isinstance(r["id"], int) and isinstance(r["rows"], int) and isinstance(r["duration_us"], int)
        assert r["protocol"] in ("simple", "extended")
        assert r["decision"] in ("allowed", "denied", "approved", "rejected")
        assert r["outcome"] == ("error" if r["sqlstate"] else "ok"), r
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    # filters narrow the same data
    only_alice = stack.audit(principal="alice-bot")
    assert only_alice and all(r["principal"] == "alice-bot" for r in only_alice)
    assert len(stack.audit(limit=1)) == 1

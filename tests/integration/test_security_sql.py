"""The agent's statement gate under attack (security review findings 1, 3, 6, 8 and 12), through
real processes: Postgres 15, the test IdP, gateway, agent, and psycopg/raw wire clients.

- 1: settings that change how Postgres lexes SQL (standard_conforming_strings, backslash_quote,
  client_encoding) cannot be changed, so the parser the agent decides with and the server agree;
  text libpg_query cannot parse is refused.
- 3: a huge or deeply nested statement never crashes the agent: over 1 MiB is ERROR 54000,
  nested too deeply ERROR 54001; the session and the agent go on.
- 6: caller-supplied code (DO, CALL, CREATE FUNCTION, ...) is its own class that read-write does not
  include; a session granted it that changes pgward.principal from inside code is ended (57P01).
- 8: principals cannot see or signal each other: monitoring views refused in every mode,
  signalling/locking/notify/sequence functions refused under read-only, role changes everywhere.
- 12: with literal capture off, audit rows carry no literals: server error messages are redacted
  and literals libpg_query's normalizer leaves in utility statements (NOTIFY payloads) are replaced.

Exact protocols: `simple(conn, sql)` sends one Query message (PQexec), `extended(conn, sql)` one
Parse/Bind/Execute/Sync (PQexecParams), both on psycopg's own libpq connection.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg

import pytest
from psycopg import pq

import jwt_forge as jf
from pgward_harness import session_id_of, unique, wait_until

CODE_BOT = "sqlsec-code-bot"      # classes grant including procedure (caller-supplied code)
RO_BOT = "grp-bot"                # read-only through the analysts group
RW_BOT = "alice-bot"              # read-write
CODE_CLASSES = "read,write,ddl,copy_in,copy_out,procedure"


# ---------------------------------------------------------------------------------------------
# Helpers


class Result:
    def __init__(self, res: pq.PGresult):
        raw = res.error_field(pq.DiagnosticField.SQLSTATE)
        self.sqlstate = raw.decode() if raw else None
        self.message = (res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode("utf-8", "replace")
        self.rows = [tuple(None if res.get_value(r, c) is None else res.get_value(r, c).decode()
                           for c in range(res.nfields)) for r in range(res.ntuples)]

    def __repr__(self):
        return f"Result(sqlstate={self.sqlstate!r}, message={self.message!r}, rows={self.rows[:5]!r})"


def simple(conn: psycopg.Connection, sql: str) -> Result:
    """One simple-protocol Query message; the last statement's result."""
    return Result(conn.pgconn.exec_(sql.encode()))


def extended(conn: psycopg.Connection, sql: str, params=()) -> Result:
    """One extended-protocol round trip (Parse, Bind, Describe, Execute, Sync)."""
    return Result(conn.pgconn.exec_params(sql.encode(), [None if p is None else str(p).encode() for p in params]))


def assert_refused(result: Result, sqlstate: str, what: str, contains: str = "pgward"):
    assert result.sqlstate == sqlstate, f"{what}: expected {sqlstate}, got {result}"
    assert contains.lower() in result.message.lower(), f"{what}: message {result.message!r} lacks {contains!r}"


def connect_as(stack, principal: str, **kw) -> psycopg.Connection:
    token = stack.token(principal) if principal in stack.idp.clients else stack.mint_token(principal)
    return stack.connect(principal, token=token, **kw)


def lexing_state(conn) -> tuple:
    return simple(conn, "SELECT current_setting('standard_conforming_strings'), current_setting('client_encoding'),"
                        " current_setting('backslash_quote')").rows[0]


@pytest.fixture(scope="module")
def code_grant(stack):
    """A principal whose grant lists the procedure (code) class explicitly."""
    grant = stack.grant(CODE_BOT, mode="classes", extra=["--classes", CODE_CLASSES])
    yield CODE_BOT
    grant_id = grant.get("id") if isinstance(grant, dict) else grant[0]["id"]
    stack.ctl("grant", "delete", grant_id)


@pytest.fixture
def no_lasting_settings(stack):
    """Undo role/database settings an unfixed agent would let through (they outlive the session)."""
    yield
    stack.pg_sql("ALTER ROLE app RESET ALL")
    stack.pg_sql("ALTER DATABASE shop RESET ALL")
    stack.pg_sql("DROP FUNCTION IF EXISTS sqlsec_f()")


@pytest.fixture
def table(stack):
    name = unique("t_sqlsec_")
    stack.pg_sql(f"CREATE TABLE {name} (id serial PRIMARY KEY, n int, body text)", user="app")
    yield name
    stack.pg_sql(f"DROP TABLE IF EXISTS {name}", user="app")


# ---------------------------------------------------------------------------------------------
# Finding 1: the lexing settings are pinned; unparsable text is refused.

LEXING_CHANGES = [
    "SET standard_conforming_strings = off",
    "SET SESSION standard_conforming_strings TO off",
    "SET \"Standard_Conforming_Strings\" = off",
    "SET standard_conforming_strings TO DEFAULT",
    "RESET standard_conforming_strings",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT pg_catalog.set_config('STANDARD_CONFORMING_STRINGS', 'off', true)",
    "SELECT * FROM t_none WHERE x = (SELECT set_config('backslash_quote', 'on', false))",
    "SET backslash_quote = on",
    "SET NAMES 'SJIS'",
    "SET client_encoding TO 'BIG5'",
    "RESET client_encoding",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    "ALTER ROLE CURRENT_USER SET standard_conforming_strings = off",
    "ALTER DATABASE shop SET client_encoding = 'SJIS'",
    "CREATE FUNCTION sqlsec_f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'select 1'",
]


@pytest.mark.parametrize("principal", [RO_BOT, RW_BOT, "code"])
def test_lexing_settings_cannot_be_changed_in_any_mode(stack, code_grant, no_lasting_settings, principal):
    who = code_grant if principal == "code" else principal
    with connect_as(stack, who) as conn:
        before = lexing_state(conn)
        assert before[0] == "on", before
        for sql in LEXING_CHANGES:
            assert_refused(simple(conn, sql), "42501", f"{who} simple: {sql}")
            assert_refused(extended(conn, sql), "42501", f"{who} extended: {sql}")
        # inside a transaction as SET LOCAL, too
        assert simple(conn, "BEGIN").sqlstate is None
        assert_refused(simple(conn, "SET LOCAL standard_conforming_strings = off"), "42501", f"{who} SET LOCAL")
        assert simple(conn, "COMMIT").sqlstate is None
        assert lexing_state(conn) == before, "a lexing setting changed"
    # The role and database keep no such setting either.
    assert stack.pg_sql("SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') "
                        "LIKE '%standard_conforming%' OR array_to_string(setconfig, ',') LIKE '%client_encoding%'"
                        ) == [(0,)]


def test_setting_the_pinned_values_is_allowed(stack):
    """pg_dump scripts and drivers (libpq PQsetClientEncoding) set the values pgward pins: fine."""
    with connect_as(stack, RO_BOT) as conn:
        for sql in ("SET standard_conforming_strings = on", "SET client_encoding = 'UTF8'",
                    "SET NAMES 'unicode'", "SET client_encoding TO 'utf-8'", "SET backslash_quote = safe_encoding",
                    "SELECT pg_catalog.set_config('standard_conforming_strings', 'on', false)"):
            r = simple(conn, sql)
            assert r.sqlstate is None, f"{sql}: {r}"
        assert lexing_state(conn) == ("on", "UTF8", "safe_encoding")


# Under standard_conforming_strings = off Postgres reads 'a\', ' as ONE string ("a', ") and then
# the text the agent (scs = on) took for the second string literal as SQL of its own.
SMUGGLED_TABLE = "sqlsec_smuggled"
EXPLOIT = ("SELECT 'a\\', ' ; SET default_transaction_read_only = off; CREATE TABLE " + SMUGGLED_TABLE +
           " (x int); SELECT set_config($q$pgward.principal$q$, $q$bot-b$q$, false); --'")


@pytest.mark.parametrize("principal", [RO_BOT, RW_BOT])
def test_exploit_string_cannot_smuggle_sql_past_the_parser(stack, principal):
    stack.pg_sql(f"DROP TABLE IF EXISTS {SMUGGLED_TABLE}")
    with connect_as(stack, principal) as conn:
        sid = session_id_of(conn)
        assert_refused(simple(conn, "SET standard_conforming_strings = off"), "42501", "scs off")
        r = simple(conn, EXPLOIT)
        # Parsed the same way by both: one SELECT of two string literals.
        assert r.sqlstate is None and r.rows == [("a\\", " ; SET default_transaction_read_only = off; CREATE TABLE "
                                                  + SMUGGLED_TABLE + " (x int); SELECT set_config($q$pgward.principal"
                                                  "$q$, $q$bot-b$q$, false); --")], r
        assert simple(conn, "SHOW pgward.principal").rows == [(principal,)]
    smuggled = stack.pg_sql(f"SELECT to_regclass('{SMUGGLED_TABLE}') IS NULL") != [(True,)]
    stack.pg_sql(f"DROP TABLE IF EXISTS {SMUGGLED_TABLE}")
    assert not smuggled, "the smuggled CREATE TABLE ran"
    # The audit shows what ran: the SELECT of two literals (normalized), attributed to the caller.
    rows = stack.wait_audit_rows(lambda r: r["statement"] == "SELECT $1, $2", session=sid)
    assert rows[0]["principal"] == principal and rows[0]["decision"] == "allowed"


@pytest.mark.parametrize("principal", [RO_BOT, RW_BOT])
def test_text_libpg_query_cannot_parse_is_refused_in_both_protocols(stack, principal):
    with connect_as(stack, principal) as conn:
        sid = session_id_of(conn)
        tag = unique("unparsed_")
        for run in (simple, extended):
            r = run(conn, f"SELEC 1 AS {tag}")
            assert_refused(r, "42601", f"{run.__name__}: unparsable", contains="pgward: statement refused")
            assert "syntax error" in r.message, r
            assert run(conn, "SELECT 1").rows == [("1",)], "the session goes on"
    rows = stack.wait_audit_rows(lambda r: r["decision"] == "denied" and r["sqlstate"] == "42601", count=2,
                                 session=sid)
    assert {r["protocol"] for r in rows} == {"simple", "extended"}
    assert all(tag not in r["statement"] for r in rows), "unparsed text is not stored verbatim"


# ---------------------------------------------------------------------------------------------
# Finding 3: size and depth bounds; the agent never crashes.

def _agent_alive_and_serving(stack):
    assert stack.agent.alive(), f"the agent died:\n{stack.agent.log()[-3000:]}"
    with connect_as(stack, "bob-bot") as other:
        assert simple(other, "SELECT 41 + 1").rows == [("42",)]


def test_long_application_name_set_neither_crashes_nor_changes_identity(stack):
    """The old rewrite matched a std::regex over the statement: 200,000 spaces overflowed its stack."""
    sql = "SET" + " " * 200_000 + "application_name = 'x'"
    with connect_as(stack, "bob-bot") as bystander, connect_as(stack, RW_BOT) as conn:
        for run in (simple, extended):
            r = run(conn, sql)
            assert r.sqlstate is None, f"{run.__name__}: {r}"
            assert simple(conn, "SHOW application_name").rows == [(f"pgward:{RW_BOT}",)]
        assert simple(bystander, "SELECT 1").rows == [("1",)], "another session on the same agent died"
    _agent_alive_and_serving(stack)


def test_statement_over_one_mib_is_refused_with_54000_and_the_session_goes_on(stack):
    big = "SELECT 1 AS big" + " " * (1 << 20)
    with connect_as(stack, RW_BOT) as conn:
        for run in (simple, extended):
            assert_refused(run(conn, big), "54000", f"{run.__name__}: 1 MiB statement", contains="too large")
            assert run(conn, "SELECT 2").rows == [("2",)]
        # just under the bound is analyzed normally
        fits = "SELECT 3 AS fits" + " " * ((1 << 20) - 100)
        assert simple(conn, fits).rows == [("3",)]
    _agent_alive_and_serving(stack)


@pytest.mark.parametrize("shape", ["operators", "casts", "unions", "parentheses"])
def test_deeply_nested_statement_fails_closed_without_crashing(stack, shape):
    if shape == "operators":
        sql, state = "SELECT 1" + "+1" * 300_000, "54001"
    elif shape == "casts":
        sql, state = "SELECT 1" + "::int" * 150_000, "54001"
    elif shape == "unions":
        sql, state = "SELECT 1" + " UNION SELECT 1" * 40_000, "54001"
    else:  # the Postgres grammar itself gives up (bison stack), in libpg_query as on the server
        sql, state = "SELECT " + "(" * 100_000 + "1" + ")" * 100_000, "42601"
    with connect_as(stack, RW_BOT) as conn:
        for run in (simple, extended):
            assert_refused(run(conn, sql), state, f"{run.__name__}: nested {shape}")
            assert run(conn, "SELECT 4").rows == [("4",)]
    _agent_alive_and_serving(stack)


def test_moderately_nested_statements_still_run(stack):
    with connect_as(stack, RW_BOT) as conn:
        assert simple(conn, "SELECT 0" + "+1" * 2000).rows == [("2000",)]
        assert extended(conn, "SELECT " + "(" * 500 + "7" + ")" * 500).rows == [("7",)]


# ---------------------------------------------------------------------------------------------
# Finding 6: caller-supplied code is its own class; identity changed by code ends the session.

CODE_STATEMENTS = [
    "DO $$BEGIN PERFORM 1; END$$",
    "CREATE FUNCTION sqlsec_code() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$",
    "CREATE OR REPLACE PROCEDURE sqlsec_proc() LANGUAGE sql AS 'SELECT 1'",
    "CALL sqlsec_proc()",
    "CREATE TRIGGER sqlsec_trg BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "CREATE RULE sqlsec_rule AS ON INSERT TO notes DO ALSO NOTIFY sqlsec",
    "CREATE OPERATOR ### (RIGHTARG = text, FUNCTION = pg_read_file)",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "COPY notes FROM '/etc/passwd'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT query_to_xml('SELECT 1', true, true, '')",
]


def test_read_write_cannot_run_caller_supplied_code(stack):
    with connect_as(stack, RW_BOT) as conn:
        for sql in CODE_STATEMENTS:
            r = simple(conn, sql)
            assert_refused(r, "42501", f"read-write: {sql}")
            assert "procedure" in r.message, r
            assert_refused(extended(conn, sql), "42501", f"read-write extended: {sql}")
        # everything else read-write had still works
        assert simple(conn, "CREATE TEMP TABLE sqlsec_tmp (a int)").sqlstate is None
        assert simple(conn, "INSERT INTO sqlsec_tmp VALUES (1)").sqlstate is None
        assert simple(conn, "SELECT pg_advisory_lock(77), pg_advisory_unlock(77)").rows == [("", "t")]


def expect_session_ended(conn: psycopg.Connection, message: str) -> None:
    """The FATAL follows the result that changed the identity. If it arrives before the caller's
    next query, libpq hands it to the notice processor (as for a backend terminated while idle)
    and the next query sees the closed connection; if after, the next query fails with it. Either
    way the caller is told why, and the session is gone."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    with pytest.raises(psycopg.OperationalError) as info:
        for _ in range(50):
            conn.execute("SELECT 1")
            time.sleep(0.05)
    told = [str(info.value)] + notices
    assert any(message in t for t in told), told


def _session_record(stack, sid: str, principal: str) -> dict:
    return stack.wait_sessions(lambda ss: next((s for s in ss if s["session_id"] == sid and s["ended"]), None),
                               principal=principal, timeout=15)


def test_identity_changed_by_a_do_block_ends_the_session_with_57P01(stack, code_grant):
    sock, _ = jf.raw_session("127.0.0.1", stack.pg_port, stack.connection, stack.mint_token(code_grant))
    try:
        sock.sendall(jf.query_message("SELECT current_setting('pgward.session_id')"))
        data = b""
        while not data.endswith(b"Z\0\0\0\x05I"):
            data += sock.recv(65536)
        msgs, _ = jf.parse_messages(data)
        sid = [m for m in msgs if m.kind == "D"][0].body[6:].decode()
        sock.sendall(jf.query_message(
            "DO $$BEGIN PERFORM set_config('pgward.principal', 'bot-b', false); END$$"))
        data, closed, _ = jf.read_until_closed(sock, 10)
    finally:
        sock.close()
    msgs, _ = jf.parse_messages(data)
    kinds = [m.kind for m in msgs]
    assert kinds[:2] == ["C", "Z"], f"the DO itself completes for the caller: {kinds}"
    fatal = [m for m in msgs if m.kind == "E"]
    assert fatal and fatal[0].severity == "FATAL" and fatal[0].sqlstate == "57P01", [(m.kind, m.fields) for m in msgs]
    assert "identity settings were changed by code" in fatal[0].message
    assert closed, "the session was not closed"
    assert "D" not in kinds and "T" not in kinds, "the agent's own check leaked rows to the caller"
    rec = _session_record(stack, sid, code_grant)
    assert rec["end_reason"] == "identity_changed", rec


def test_identity_changed_by_a_function_ends_the_session(stack, code_grant):
    fn = unique("sqlsec_fn_")
    with connect_as(stack, code_grant) as conn:
        sid = session_id_of(conn)
        conn.execute(f"CREATE FUNCTION {fn}() RETURNS text LANGUAGE plpgsql AS "
                     "$$BEGIN PERFORM set_config('pgward.principal', 'bot-b', false); RETURN 'done'; END$$")
        assert conn.execute(f"SELECT {fn}()").fetchone() == ("done",)
        expect_session_ended(conn, "identity settings were changed by code")
    stack.pg_sql(f"DROP FUNCTION IF EXISTS {fn}()")
    assert _session_record(stack, sid, code_grant)["end_reason"] == "identity_changed"


@pytest.mark.parametrize("change, message, reason, at_once", [
    # pgward.* settings are not reported by the server: the agent's identity check after the
    # round trip finds the change, and the caller sees the FATAL on its next one.
    ("BEGIN; DO $$BEGIN PERFORM set_config('pgward.principal', 'bot-b', true); END$$",
     "identity settings were changed by code", "identity_changed", False),
    # Lexing settings are reported (ParameterStatus): the session ends with the DO's own answer.
    ("DO $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END$$",
     None, "lexing_setting_changed", True),
    ("DO $$BEGIN EXECUTE 'SET client_encoding = ' || quote_literal('SJIS'); END$$",
     None, "lexing_setting_changed", True),
])
def test_settings_changed_inside_code_end_the_session(stack, code_grant, change, message, reason, at_once):
    """SET LOCAL inside a transaction counts too, and so do the lexing settings (EXECUTE in PL/pgSQL)."""
    with connect_as(stack, code_grant) as conn:
        sid = session_id_of(conn)
        result = simple(conn, change)
        if at_once:
            # libpq reports a FATAL that arrives mid-query without its fields, so this checks
            # that the session is gone; test_security_upstream.py's raw-client test
            # (test_a_function_changing_a_watched_setting_ends_the_session) checks the FATAL.
            assert conn.pgconn.status == pq.ConnStatus.BAD, result
        else:
            assert result.sqlstate is None, result
            expect_session_ended(conn, message)
    assert _session_record(stack, sid, code_grant)["end_reason"] == reason


def test_code_session_statements_and_pipelines_are_unaffected(stack, code_grant, table):
    with connect_as(stack, code_grant) as conn:
        sid = session_id_of(conn)
        conn.execute("DO $$BEGIN PERFORM 1; END$$")
        assert simple(conn, "SELECT 1 AS a; SELECT 2 AS b").rows == [("2",)]
        assert simple(conn, f"INSERT INTO {table} (n) VALUES (1), (2); SELECT count(*) FROM {table}").rows == [("2",)]
        # pipelined extended queries: every result is the caller's, in order
        with conn.pipeline():
            curs = [conn.execute(f"SELECT n, %s::int AS k FROM {table} ORDER BY n", (i,)) for i in range(20)]
            conn.execute(f"INSERT INTO {table} (n) VALUES (%s)", (3,))
            last = conn.execute(f"SELECT count(*) FROM {table}")
        for i, cur in enumerate(curs):
            assert cur.fetchall() == [(1, i), (2, i)]
        assert last.fetchone() == (3,)
        # transactions: the check takes no snapshot, so SET TRANSACTION still comes first
        conn.execute("BEGIN")
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        conn.execute("COMMIT")
        # an aborted transaction makes the check fail (25P02): swallowed, checked again later
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK")
        # COPY FROM STDIN (the check must not land inside copy-in)
        with conn.cursor().copy(f"COPY {table} (n) FROM STDIN") as copy:
            for n in (10, 11):
                copy.write_row((n,))
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (5,)
        assert conn.execute("SELECT current_setting('pgward.principal')").fetchone() == (code_grant,)
    rows = stack.audit(session=sid)
    assert rows and not any("SHOW pgward" in r["statement"] or "pgward.session_id; SHOW" in r["statement"]
                            for r in rows), "the agent's own check reached the audit"


# ---------------------------------------------------------------------------------------------
# Finding 8: principals cannot see or signal each other.

MONITORING = [
    "SELECT query FROM pg_stat_activity",
    "SELECT * FROM pg_catalog.pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
    "SELECT * FROM pg_locks",
    "WITH a AS (SELECT * FROM pg_stat_activity) SELECT count(*) FROM a",
    "EXPLAIN ANALYZE SELECT * FROM pg_stat_activity",
]


@pytest.mark.parametrize("principal", [RO_BOT, RW_BOT])
def test_monitoring_views_are_refused_in_every_mode(stack, principal):
    with connect_as(stack, principal) as conn:
        for sql in MONITORING:
            assert_refused(simple(conn, sql), "42501", f"{principal}: {sql}")
            assert_refused(extended(conn, sql), "42501", f"{principal} extended: {sql}")


def test_a_grant_with_allow_monitoring_may_read_the_monitoring_views(stack):
    principal = "sqlsec-monitor-bot"
    grant = stack.grant(principal, mode="read-only", extra=["--allow-monitoring"])
    try:
        listed = json.loads(stack.ctl("grant", "list", "--principal", principal, "--json").stdout)
        assert [g["allow_monitoring"] for g in listed] == [True]
        with connect_as(stack, principal) as conn:
            for sql in MONITORING:
                assert simple(conn, sql).sqlstate is None, f"monitoring grant: {sql}"
            # Everything else stays as the grant's mode says.
            assert_refused(simple(conn, "SELECT pg_advisory_lock(1)"), "42501", "read-only monitoring grant")
    finally:
        stack.ctl("grant", "delete", (grant.get("id") if isinstance(grant, dict) else grant[0]["id"]))


def test_read_only_cannot_signal_lock_notify_or_write_sequences(stack):
    with connect_as(stack, "bob-bot") as victim, connect_as(stack, RO_BOT) as conn:
        victim_pid = int(simple(victim, "SELECT pg_backend_pid()").rows[0][0])
        for sql in (f"SELECT pg_terminate_backend({victim_pid})", f"SELECT pg_cancel_backend({victim_pid})",
                    "SELECT pg_reload_conf()", "SELECT pg_advisory_lock(1)", "SELECT pg_catalog.PG_TRY_ADVISORY_LOCK(1)",
                    "SELECT pg_advisory_xact_lock_shared(1)", "LISTEN sqlsec", "NOTIFY sqlsec", "NOTIFY sqlsec, 'x'",
                    "SELECT pg_notify('sqlsec', 'x')", "SELECT nextval('orders_id_seq')",
                    "SELECT setval('orders_id_seq', 1)", "SELECT lo_create(0)", "SELECT lo_import('/etc/passwd')",
                    "SELECT pg_ls_dir('.')"):
            assert_refused(simple(conn, sql), "42501", f"read-only: {sql}")
            assert_refused(extended(conn, sql), "42501", f"read-only extended: {sql}")
        assert simple(victim, "SELECT 1").rows == [("1",)], "the other principal's session was hurt"
        # reading a sequence is still a read: Postgres answers (55000: nextval not yet called here)
        assert simple(conn, "SELECT currval('orders_id_seq')").sqlstate == "55000"


@pytest.mark.parametrize("principal", [RO_BOT, RW_BOT])
def test_role_changes_are_refused_in_every_mode(stack, principal):
    with connect_as(stack, principal) as conn:
        for sql in ("SET ROLE postgres", "SET ROLE NONE", "RESET ROLE", "SET LOCAL ROLE app",
                    "SET SESSION AUTHORIZATION postgres", "RESET SESSION AUTHORIZATION",
                    "SET SESSION AUTHORIZATION DEFAULT", "SELECT set_config('role', 'postgres', false)",
                    "SELECT set_config('session_authorization', 'app', false)"):
            assert_refused(simple(conn, sql), "42501", f"{principal}: {sql}")
        assert simple(conn, "SELECT current_user, session_user").rows == [("app", "app")]


def test_read_write_keeps_locks_notify_and_sequences(stack):
    with connect_as(stack, RW_BOT) as conn:
        assert simple(conn, "SELECT pg_advisory_lock(4242)").sqlstate is None
        assert simple(conn, "SELECT pg_advisory_unlock(4242)").rows == [("t",)]
        assert simple(conn, "LISTEN sqlsec_rw").sqlstate is None
        assert simple(conn, "NOTIFY sqlsec_rw, 'x'").sqlstate is None
        assert simple(conn, "SELECT nextval('orders_id_seq') > 0").rows == [("t",)]


# ---------------------------------------------------------------------------------------------
# Finding 12: no literals in the audit trail.

def test_audit_rows_carry_no_literals_from_errors_or_utility_statements(stack):
    channel = unique("sqlsec_chan_")
    with connect_as(stack, RW_BOT) as conn:
        sid = session_id_of(conn)
        assert simple(conn, "SELECT 'ssn-123-45-6789'::int").sqlstate == "22P02"
        assert extended(conn, "SELECT $1::int", ("ssn-987-65-4321",)).sqlstate == "22P02"
        assert simple(conn, "SELECT 1 'ssn-555-55-5555'").sqlstate == "42601"  # refused by the agent
        assert simple(conn, f"NOTIFY {channel}, 'ssn-111-11-1111'").sqlstate is None
        assert simple(conn, "PREPARE sqlsec_p AS SELECT 'ssn-222-22-2222'::text").sqlstate is None
        assert simple(conn, "SELECT pg_notify('x', 'ssn-333-33-3333')").sqlstate is None
        # identifiers in errors stay useful
        assert simple(conn, "SELECT * FROM sqlsec_no_such_table").sqlstate == "42P01"
    rows = stack.wait_audit(lambda rs: rs if len(rs) >= 8 else None, session=sid)
    for r in rows:
        assert "ssn-" not in r["statement"] and "ssn-" not in r["error"], r
    cast = [r for r in rows if r["sqlstate"] == "22P02"]
    assert len(cast) == 2 and all("invalid input syntax for type integer" in r["error"] for r in cast), cast
    missing = [r for r in rows if r["sqlstate"] == "42P01"]
    assert missing and '"sqlsec_no_such_table"' in missing[0]["error"], missing
    notify = [r for r in rows if r["statement"].startswith("NOTIFY")]
    assert notify and notify[0]["statement"] == f"NOTIFY {channel}, $1", notify

"""The agent's upstream pool (agent/upstream/upstream_pool.h), against real Postgres.

A session that ends with the caller's Terminate at ReadyForQuery idle hands its upstream
connection back; the agent resets it with DISCARD ALL and the next session of the SAME principal
(same connection, credential, policy and startup parameters) reuses it. These tests prove reuse
by the upstream backend pid, that no session state survives the reset, that another principal
never gets the connection, that sessions ended any other way do not return theirs, that a
pooled connection the server ended is not handed out, and that --upstream-pool=false turns it off.

Each test uses its own agent and connection (isolated_agent), so its pool starts empty.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from pgward_harness import unique, wait_until


def _pid_and_identity(conn) -> tuple[int, str, str, str]:
    return conn.execute("SELECT pg_backend_pid(), current_setting('application_name'), "
                        "current_setting('pgward.principal'), current_setting('pgward.session_id')").fetchone()


def _wait_pooled(stack, pid: int) -> None:
    """Waits until backend `pid` sits idle after the pool's reset (its last query DISCARD ALL)."""
    def pooled():
        rows = stack.pg_sql("SELECT state, query FROM pg_stat_activity WHERE pid = %s", params=(pid,))
        return rows and rows[0][0] == "idle" and rows[0][1] == "DISCARD ALL"
    wait_until(pooled, 10, what=f"backend {pid} to be reset and pooled")


def _wait_gone(stack, pid: int) -> None:
    wait_until(lambda: not stack.pg_sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", params=(pid,)), 10,
               what=f"backend {pid} to end")


def _advisory_locks(stack, pid: int) -> int:
    return stack.pg_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                        params=(pid,))[0][0]


def test_second_session_of_the_same_principal_reuses_the_connection_with_no_state_left(stack, isolated_agent):
    iso = isolated_agent(grants=[("principal", "alice-bot", "read-write")])
    temp = unique("pool_tmp_")
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        pid, app, principal, first_session = _pid_and_identity(conn)
        assert (app, principal) == ("pgward:alice-bot", "alice-bot")
        default_work_mem = conn.execute("SHOW work_mem").fetchone()[0]
        conn.execute(f"CREATE TEMP TABLE {temp} (x int)")
        conn.execute("SET work_mem = '7MB'")
        conn.execute("SET search_path = pg_catalog")
        conn.execute("PREPARE pool_leak AS SELECT 1")
        conn.execute("LISTEN pool_leak_channel")
        conn.execute("SELECT pg_advisory_lock(4242)")
        # Sanity: the state really is there before the reset.
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0] == 1
        assert _advisory_locks(stack, pid) == 1
    _wait_pooled(stack, pid)
    # A notification sent to the old channel while the connection is idle is not delivered.
    stack.pg_sql("NOTIFY pool_leak_channel")

    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        pid2, app2, principal2, second_session = _pid_and_identity(conn)
        assert pid2 == pid, "the second session of the same principal should reuse the pooled connection"
        assert (app2, principal2) == ("pgward:alice-bot", "alice-bot")
        assert second_session != first_session and second_session != ""
        assert second_session in {s["session_id"] for s in stack.sessions(principal="alice-bot",
                                                                          connection=iso.connection)}
        assert conn.execute("SELECT to_regclass(%s)", (f"pg_temp.{temp}",)).fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").fetchone()[0] == 0
        assert conn.execute("SHOW work_mem").fetchone()[0] == default_work_mem
        assert conn.execute("SHOW search_path").fetchone()[0] != "pg_catalog"
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0] == 0
        assert _advisory_locks(stack, pid2) == 0  # pg_locks is not for callers: checked directly
        # The pinned startup settings survive DISCARD ALL's RESET ALL: they are session defaults.
        assert conn.execute("SHOW standard_conforming_strings").fetchone()[0] == "on"
        assert conn.execute("SHOW backslash_quote").fetchone()[0] == "safe_encoding"
        assert conn.execute("SELECT current_user").fetchone()[0] == "app"
        # The caller's own RESET ALL keeps the principal and application_name.
        conn.execute("RESET ALL")
        assert conn.execute("SELECT current_setting('pgward.principal'), current_setting('application_name')"
                            ).fetchone() == ("alice-bot", "pgward:alice-bot")
    assert conn.closed


def test_read_only_pin_survives_the_reset(stack, isolated_agent):
    iso = isolated_agent(grants=[("group", "analysts", "read-only")])
    with stack.connect("grp-bot", dbname=iso.connection) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
    _wait_pooled(stack, pid)
    with stack.connect("grp-bot", dbname=iso.connection) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"


def test_another_principal_never_gets_the_connection(stack, isolated_agent):
    iso = isolated_agent(grants=[("principal", "alice-bot", "read-write"), ("principal", "bob-bot", "read-write")])
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        alice_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    _wait_pooled(stack, alice_pid)
    with stack.connect("bob-bot", dbname=iso.connection) as conn:
        bob_pid, app, principal, _ = _pid_and_identity(conn)
        assert bob_pid != alice_pid
        assert (app, principal) == ("pgward:bob-bot", "bob-bot")
    # Alice's connection is still idle in the pool, untouched by bob's session.
    rows = stack.pg_sql("SELECT state, query, application_name FROM pg_stat_activity WHERE pid = %s",
                        params=(alice_pid,))
    assert rows == [("idle", "DISCARD ALL", "pgward:alice-bot")]


def test_session_in_a_transaction_does_not_return_its_connection(stack, isolated_agent):
    iso = isolated_agent()
    conn = psycopg.connect(stack.dsn("alice-bot", dbname=iso.connection), autocommit=False)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # opens a transaction
    conn.close()  # Terminate inside a transaction: not idle, so not returned
    _wait_gone(stack, pid)


def test_killed_session_does_not_return_its_connection(stack, isolated_agent):
    iso = isolated_agent()
    conn = stack.connect("alice-bot", dbname=iso.connection)
    pid, _, _, sid = _pid_and_identity(conn)
    r = stack.ctl("session", "kill", sid)
    assert r.returncode == 0, r.stderr
    with pytest.raises(psycopg.OperationalError):
        for _ in range(50):
            conn.execute("SELECT 1")
            time.sleep(0.1)
    conn.close()
    _wait_gone(stack, pid)
    with stack.connect("alice-bot", dbname=iso.connection) as conn2:
        assert conn2.execute("SELECT pg_backend_pid()").fetchone()[0] != pid


def test_session_ended_with_fatal_does_not_return_its_connection(stack, isolated_agent):
    # Token expiry ends the session with FATAL 57P01 (EndWithFatal / EndSession): whatever the
    # caller does next, that connection is closed, not pooled.
    iso = isolated_agent()
    token = stack.mint_token("alice-bot", exp=int(time.time()) + 4)
    conn = stack.connect("alice-bot", token=token, dbname=iso.connection)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pytest.raises(psycopg.OperationalError) as info:
        for _ in range(100):
            conn.execute("SELECT 1")
            time.sleep(0.1)
    assert "expired" in str(info.value)
    conn.close()
    _wait_gone(stack, pid)


def test_pooled_connection_ended_by_the_server_is_not_handed_out(stack, isolated_agent):
    iso = isolated_agent()
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    _wait_pooled(stack, pid)
    assert stack.pg_sql("SELECT pg_terminate_backend(%s)", params=(pid,)) == [(True,)]
    _wait_gone(stack, pid)
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        pid2, app, principal, _ = _pid_and_identity(conn)
        assert pid2 != pid
        assert (app, principal) == ("pgward:alice-bot", "alice-bot")
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_upstream_pool_false_logs_in_for_every_session(stack, isolated_agent):
    iso = isolated_agent(extra_flags=["--upstream-pool=false"])
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    _wait_gone(stack, pid)
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid


def _identity(conn) -> tuple[str, str]:
    return conn.execute("SELECT current_setting('pgward.principal'), current_setting('pgward.session_id')").fetchone()


@pytest.mark.parametrize("code_grant", [False, True], ids=["read-write", "with-procedure-class"])
def test_reset_all_on_a_reused_connection_keeps_this_sessions_id(stack, isolated_agent, code_grant):
    # On a reused connection pgward.session_id was SET at reuse (the start-up packet carried the
    # first session's id): after the caller's RESET ALL / DISCARD ALL the agent sets it again, in
    # both protocols. With the procedure class the identity check runs after each round trip
    # and must find the identity intact, not end the session.
    principal = unique("pool-code-bot-") if code_grant else "alice-bot"
    token = stack.mint_token(principal) if code_grant else None
    iso = isolated_agent(grants=[] if code_grant else [("principal", "alice-bot", "read-write")])
    if code_grant:
        stack.grant(principal, iso.connection, mode="classes", extra=["--classes", "read,write,procedure"])
    with stack.connect(principal, token=token, dbname=iso.connection) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # With the procedure class the agent's identity check follows every round trip; a
        # session that ends while one is in flight does not return its connection. An empty
        # Query (no statement, so no check) waits for the last one.
        conn.pgconn.exec_(b"")
    _wait_pooled(stack, pid)
    with stack.connect(principal, token=token, dbname=iso.connection) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        mine = _identity(conn)
        assert mine[0] == principal
        for sql in ("RESET ALL", "DISCARD ALL"):
            # simple protocol: one Query message
            result = conn.pgconn.exec_(sql.encode())
            assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, result.error_message
            assert _identity(conn) == mine, f"after simple {sql}"
            # extended protocol: Parse/Bind/Execute/Sync
            conn.execute(sql)
            assert _identity(conn) == mine, f"after extended {sql}"
        # Inside a transaction that rolls back, the RESET and the restore go together.
        conn.execute("BEGIN")
        conn.execute("RESET ALL")
        conn.execute("ROLLBACK")
        assert _identity(conn) == mine
        # Several statements in one Query, the RESET in the middle.
        result = conn.pgconn.exec_(b"SELECT 1; RESET ALL; SELECT 2")
        assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
        assert _identity(conn) == mine
        assert conn.execute("SELECT 7").fetchone() == (7,)


def test_connection_update_keeps_live_sessions_and_never_reuses_connections_made_before_it(stack, isolated_agent):
    iso = isolated_agent(grants=[("principal", "alice-bot", "read-write")])
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        old_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    _wait_pooled(stack, old_pid)
    with stack.connect("alice-bot", dbname=iso.connection) as live:
        assert live.execute("SELECT pg_backend_pid()").fetchone()[0] == old_pid  # pooled before the update
        # Settings the upstream login depends on change; the live session is not disturbed.
        stack.ctl("connection", "update", iso.connection, "--sslmode", "prefer", check=True)
        assert live.execute("SELECT 1").fetchone() == (1,)
        with stack.connect("alice-bot", dbname=iso.connection) as fresh:
            new_pid = fresh.execute("SELECT pg_backend_pid()").fetchone()[0]
            # A new session uses the new settings at once: a login of its own, not a kept connection.
            assert new_pid != old_pid
    # The connection made before the update, returned by `live`, is still not handed out.
    with stack.connect("alice-bot", dbname=iso.connection) as later:
        assert later.execute("SELECT pg_backend_pid()").fetchone()[0] != old_pid


def test_a_session_whose_policy_changed_does_not_return_its_connection(stack, isolated_agent):
    iso = isolated_agent(grants=[("principal", "alice-bot", "read-write")])
    [grant] = [g for g in stack.ctl_json("grant", "list", "--connection", iso.connection)]
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        stack.ctl_json("grant", "update", grant["id"], "--mode", "read-only")
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    # Its settings no longer match the key it was pooled under: closed, not kept.
    _wait_gone(stack, pid)

"""Admin identities, stored credentials, upstream failures and token expiry, end to end."""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest

import jwt_forge as jf
from pgward_harness import error_once_ended, CTL_BIN, session_id_of, unique, wait_until


def _ctl_with_token(env, token: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    token_file = tmp_path / unique("admin-token-")
    token_file.write_text(token)
    ctl_env = env.gateway.ctl_env()
    ctl_env["PGWARD_TOKEN_FILE"] = str(token_file)
    return subprocess.run([str(CTL_BIN), *args], capture_output=True, text=True, env=ctl_env, timeout=30)


def test_oidc_admin_principal_and_group_may_administer_others_may_not(isolated_gateway, tmp_path):
    env = isolated_gateway(flags=["--admin-principal", "dave-bot", "--admin-group", "operators"])
    as_principal = _ctl_with_token(env, env.token("dave-bot"), tmp_path, "agent", "list", "--json")
    assert as_principal.returncode == 0, as_principal.stderr
    assert any(a["name"] == "db1" for a in __import__("json").loads(as_principal.stdout))
    as_group = _ctl_with_token(env, env.token("ops-bot"), tmp_path, "connection", "list")
    assert as_group.returncode == 0, as_group.stderr
    for outsider in ("carol-bot", "alice-bot"):
        refused = _ctl_with_token(env, env.token(outsider), tmp_path, "agent", "list")
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("pgwardctl: ")
    garbage = _ctl_with_token(env, "not-a-token", tmp_path, "agent", "list")
    assert garbage.returncode == 1 and "not-a-token" not in garbage.stderr


def test_gateway_stored_password_reaches_postgres_and_is_never_shown(stack):
    name = unique("stored_")
    r = stack.ctl("connection", "create", name, "--agent", "db1", "--host", "127.0.0.1",
                  "--port", str(stack.postgres.port), "--database", "shop", "--user", "app",
                  "--password-ref", "gateway:", "--password-stdin", "--sslmode", "require",
                  input=stack.postgres.app_password + "\n")
    assert r.returncode == 0, r.stderr
    try:
        stack.grant("alice-bot", connection=name, mode="read-only")
        with stack.connect("alice-bot", dbname=name) as conn:
            assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3,)
        listing = stack.ctl("connection", "list", "--json")
        assert listing.returncode == 0
        assert stack.postgres.app_password not in listing.stdout
        assert stack.postgres.app_password not in stack.gateway_log()
        assert stack.postgres.app_password not in stack.agent_log()
    finally:
        stack.ctl("connection", "delete", name)


def test_upstream_login_failure_is_08006_with_a_reason(stack):
    name = unique("badpw_")
    stack.create_connection(name, "db1", password_ref="agent-env:PGWARD_NO_SUCH_VARIABLE")
    wrong = unique("wrongpw_")
    stack.create_connection(wrong, "db1", user="nosuchrole")
    try:
        stack.grant("alice-bot", connection=name)
        stack.grant("alice-bot", connection=wrong)
        missing = jf.raw_login("127.0.0.1", stack.pg_port, name, stack.token("alice-bot"))
        assert missing.closed and not missing.authenticated
        assert missing.error is not None and missing.error.sqlstate == "08006", missing.messages
        assert "credential" in missing.error.message
        refused = jf.raw_login("127.0.0.1", stack.pg_port, wrong, stack.token("alice-bot"))
        assert refused.error is not None and refused.error.sqlstate == "08006", refused.messages
        assert "upstream login failed" in refused.error.message
        assert "nosuchrole" in refused.error.message  # Postgres's own reason comes through
    finally:
        stack.ctl("connection", "delete", name)
        stack.ctl("connection", "delete", wrong)


def test_session_ends_with_57P01_when_its_token_expires(stack):
    # A token 5 s from expiry (the gateway allows 60 s of clock leeway at login only, so
    # exp in the near future is still accepted): the session must end at exp, not linger.
    token = stack.mint_token("alice-bot", exp=int(time.time()) + 5)
    with stack.connect("alice-bot", token=token) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        time.sleep(6.5)
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("SELECT 1")
        assert "expired" in str(info.value)
    assert stack.wait_sessions(lambda ss: any(s["end_reason"] == "token_expired" for s in ss),
                               principal="alice-bot")


def test_killed_session_gets_57P01_and_is_recorded(stack):
    with stack.connect("bob-bot") as conn:
        sid = session_id_of(conn)
        r = stack.ctl("session", "kill", sid)
        assert r.returncode == 0, r.stderr
        assert "administrator" in error_once_ended(conn)
    assert stack.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "killed" for s in ss),
                               principal="bob-bot")


def test_slow_upstream_login_reports_08006_instead_of_a_silent_close(stack):
    # An upstream that accepts TCP but never answers: the agent's login gives up after 10 s
    # and says so; the gateway's login bound (also 10 s) covers only the caller's own start-up
    # and authentication, so it must not cut the connection off while the agent is working.
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    name = unique("silent_")
    stack.create_connection(name, "db1", port=listener.getsockname()[1], sslmode="disable")
    try:
        stack.grant("alice-bot", connection=name)
        started = time.monotonic()
        result = jf.raw_login("127.0.0.1", stack.pg_port, name, stack.token("alice-bot"), timeout=30)
        elapsed = time.monotonic() - started
        assert result.error is not None, f"closed without a reason after {elapsed:.1f}s: {result.messages}"
        assert result.error.sqlstate == "08006", result.error.fields
        assert "timed out" in result.error.message
        assert elapsed < 20
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
        stack.ctl("connection", "delete", name)


def test_deleting_a_grant_ends_the_sessions_it_allowed_and_only_those(stack):
    grant = stack.grant("dave-bot", mode="read-write")
    grant_id = grant["id"] if isinstance(grant, dict) else grant[0]["id"]
    with stack.connect("dave-bot") as dave, stack.connect("alice-bot") as alice:
        sid = session_id_of(dave)
        assert dave.execute("SELECT 1").fetchone() == (1,)
        r = stack.ctl("grant", "delete", grant_id)
        assert r.returncode == 0, r.stderr
        assert "grant was deleted" in error_once_ended(dave)
        # another principal's session is untouched
        assert alice.execute("SELECT 2").fetchone() == (2,)
    assert stack.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "grant_deleted"
                                              for s in ss), principal="dave-bot")
    refused = jf.raw_login("127.0.0.1", stack.pg_port, stack.connection, stack.token("dave-bot"))
    assert refused.error is not None and refused.error.sqlstate == "28000"


def test_session_record_keeps_the_agents_end_reason_after_psql_quits(stack):
    # psql sends Terminate and closes its socket: the gateway sees only the close
    # (client_disconnect), the agent sees the Terminate. Its SessionEnded event is stored on the
    # session row, so the record says what really happened.
    app = unique("psqlquit_")
    r = stack.psql("alice-bot", "select 1", dsn_overrides={"application_name": app})
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    assert stack.wait_sessions(
        lambda ss: any(s["application_name"] == app and s["end_reason"] == "client_terminate" for s in ss),
        principal="alice-bot"), stack.sessions(principal="alice-bot")


def _upstream_backend(stack, tag: str):
    rows = stack.pg_sql("select pid from pg_stat_activity where query like %s and pid <> pg_backend_pid()",
                        params=(f"%{tag}%",))
    return rows[0][0] if rows else None


def test_killing_a_session_ends_its_upstream_backend_at_once(stack):
    # Kill sends EndSession to the agent, which cancels the running statement and closes the
    # upstream connection. A closed socket alone would leave pg_sleep(30) running for 30 s.
    # psql (verbose) because it prints the SQLSTATE of the FATAL that ends the connection.
    tag = unique("killsleep")
    app = unique("killapp_")
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    argv = ["psql", "-X", "-v", "VERBOSITY=verbose", "-c", f"select pg_sleep(30) /* {tag} */",
            stack.dsn("bob-bot", application_name=app)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        pid = wait_until(lambda: _upstream_backend(stack, tag), 15, what=f"pg_sleep tagged {tag} to run upstream")
        sid = wait_until(lambda: [s["session_id"] for s in stack.sessions(principal="bob-bot", active=True)
                                  if s["application_name"] == app], 10, what="the session to be listed")[0]
        r = stack.ctl("session", "kill", sid)
        assert r.returncode == 0, r.stderr
        killed = time.monotonic()
        wait_until(lambda: not stack.pg_sql("select 1 from pg_stat_activity where pid = %s", params=(pid,)), 2,
                   what=f"upstream backend {pid} to be gone within 2 s of the kill")
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - killed < 5, "psql ran on after the kill"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "57P01" in err and "terminated by an administrator" in err, f"psql stderr: {err!r}"
    assert stack.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "killed" for s in ss),
                               principal="bob-bot")
    assert f"gateway ended session {sid} (killed; caller told 57P01" in stack.agent_log()

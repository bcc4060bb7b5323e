"""pytest fixtures for pgward's integration tests (real processes, nothing mocked).

Run: /usr/bin/python3 -m pytest tests/integration -q      (root: Postgres runs via runuser)
Env: PGWARD_BUILD_DIR (default <repo>/build), PGWARD_KEEP=1 keeps the temp work dir.

Fixtures
--------
``stack`` (session scope) -- one of everything, shared by all tests:
  * PostgreSQL 15 on 127.0.0.1:stack.postgres.port: ssl=on, scram-sha-256,
    ``log_statement = 'all'``, ``log_connections``/``log_disconnections`` on and
    ``log_line_prefix = '%m [%p] app=%a user=%u db=%d '`` (grep ``app=pgward:alice-bot``).
    Database ``shop`` owned by role ``app`` with tables customers(id,name,country) (3 rows),
    orders(id serial, customer_id, total, placed_at) (4 rows), notes(id serial, author, body).
    Tests that write should use their own table (``unique("t_")`` names) or clean up.
  * the test IdP (tests/idp) with clients alice-bot, bob-bot, carol-bot (no grant), grp-bot
    (groups ["analysts"]), dave-bot and erin-bot (spare, no grant: grant/revoke them yourself),
    ops-bot (groups ["operators"], no grant). Its signing key is known to the harness.
  * one pgward-gateway (self-signed TLS in its data dir) trusting that IdP, audience pgward.
  * agent ``db1`` online; connection ``shop`` -> Postgres shop as app, password via
    agent-env:SHOP_DB_PASSWORD, sslmode require.
  * grants on shop: alice-bot read-write, bob-bot read-write, group analysts read-only.

  API (a ``GatewayEnv``, see pgward_harness.py):
    stack.token(client)                 fresh token from the IdP (client_credentials)
    stack.mint_token(sub, groups=, ttl=, aud=, iss=, exp=, nbf=, alg=, typ=, kid=, key=,
                     extra_claims=, drop_claims=, header=)
                                        JWT signed with the IdP's key (trusted) for ANY subject;
                                        key=stack.idp.new_untrusted_key() for a foreign signer,
                                        alg="none", alg="HS256" (key confusion) also supported
    stack.dsn(client, token=None, **overrides)   libpq conninfo to the gateway (password = token;
                                        overrides e.g. dbname="nope", sslmode="disable",
                                        password=None drops the password)
    stack.connect(client, token=None, autocommit=True, **overrides)   psycopg 3 connection
    stack.psql(client, sql, *args, token=None, input=None, on_error_stop=True, timeout=60,
               dsn_overrides=None) -> CompletedProcess  (psql -X -A -t -q; never raises)
    stack.ctl(*args, check=False) -> CompletedProcess;  stack.ctl_json(*args) -> parsed --json
    stack.audit(principal=, connection=, since=, limit=10000, session=) -> list of dicts
    stack.wait_audit(predicate(rows), timeout=10, **filters) -> predicate's truthy value
    stack.wait_audit_rows(match(row), count=1, timeout=10, **filters) -> matching rows, oldest first
    stack.sessions(principal=, connection=, active=False) / stack.wait_sessions(predicate, ...)
    stack.grant(who, connection=None, mode="read-write", group=False, extra=())
    stack.create_connection(name, agent, database=, user=, port=, password_ref=, sslmode=)
    stack.add_agent(name, start=True) -> Agent (registered on this gateway, has the DB password env)
    stack.rogue(agent_name, token_file, *args) -> dict   tests/tools/rogue_agent's JSON answer
                                        (an AgentService client that misbehaves with a real token)
    stack.pg_log(since=0) / stack.pg_log_mark()    Postgres log text / current byte offset
    stack.gateway_log(), stack.agent_log(name=None)
    stack.pg_sql(sql, dbname="shop", user="postgres") -> rows   direct to Postgres (bypasses pgward)
    stack.direct_dsn(**overrides)       TCP+TLS conninfo straight to Postgres as app
    stack.issuer, stack.pg_port (gateway's Postgres port), stack.grpc_port, stack.connection ("shop"),
    stack.pids, stack.paths, stack.gateway (Gateway: pid, log_path, data_dir, ca_file, admin_key),
    stack.agent (Agent "db1": pid, process, log_path), stack.postgres (Postgres: port, pid,
    app_password, log_path), stack.idp (Idp: issuer, clients)
  Do NOT kill or restart the shared stack's processes; use the factories below.

``isolated_agent`` (function scope) -- factory ``isolated_agent(grants=..., start=True, extra_flags=())``:
  registers and starts a NEW agent on the shared gateway plus a NEW connection to the same
  ``shop`` database, grants ``grants`` (default [("principal","alice-bot","read-write")];
  tuples (kind "principal"|"group", who, mode)) and returns an ``IsolatedAgent`` with
  .name, .connection, .agent (Agent: .stop() .kill() (SIGKILL) .start() .restart()
  .wait_online(bool) .pid .process .log()), .pid, .process. It unpacks as
  ``(connection_name, agent_process)``. Stopped (by pid) and deleted at test end.
  Connect to it with ``stack.connect("alice-bot", dbname=iso.connection)``.

``isolated_gateway`` (function scope) -- factory ``isolated_gateway(flags=(), grants=DEFAULT_GRANTS)``:
  a NEW gateway (own ports and data dir, extra command-line ``flags`` e.g.
  ["--allow-insecure-loopback"], ["--session-open-timeout-ms", "2000"]) sharing the Postgres and
  the IdP, with its own agent "db1", connection "shop" and grants. Returns a GatewayEnv with the
  same API as ``stack``; its processes may be killed/restarted freely
  (env.gateway.kill() / .start() / .restart() keep ports and data dir; env.agent likewise).
  Stopped by pid at test end.

Helpers importable from pgward_harness: unique(prefix), wait_until(fn, timeout, ...),
free_port(), conninfo(**kw), DEFAULT_CLIENTS, DEFAULT_GRANTS.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgward_harness as h  # noqa: E402


def pytest_sessionstart(session):
    missing = h.missing_binaries()
    if missing:
        pytest.exit(f"{h.build_hint()}\nmissing: {', '.join(map(str, missing))}", returncode=2)
    if os.geteuid() != 0:
        pytest.exit("the integration tests run Postgres via `runuser -u postgres`: run them as root",
                    returncode=2)


@pytest.fixture(scope="session")
def workdir():
    d = h.make_workdir()
    yield d
    # Catch-all for sanitizer builds: any gateway/agent log in the work dir, including those
    # of processes that were never stopped through the harness.
    for log in sorted(d.rglob("*.log")):
        if log.name.startswith(("gateway", "agent")):
            h.note_sanitizer_report(f"log {log}", log.read_text(errors="replace"))
    found = list(dict.fromkeys(h.SANITIZER_REPORTS))
    if os.environ.get("PGWARD_KEEP") == "1" or found or h.KEEP_WORKDIR:
        print(f"\npgward integration work dir kept: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)
    if found:
        pytest.fail("sanitizer reports in pgward processes:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Fails the test whose processes logged a sanitizer report (sanitizer builds only)."""
    before = len(h.SANITIZER_REPORTS)
    yield
    new = h.SANITIZER_REPORTS[before:]
    if new:
        pytest.fail("sanitizer report(s):\n" + "\n".join(new), pytrace=False)


@pytest.fixture(autouse=True)
def shared_stack_stays_up(request):
    """Stops the run at the first test after which a shared stack process is gone.

    Every later test would only fail with "connection refused"; this names the process, its
    exit status and its log tail (a crash writes its signal and stack trace there) instead,
    and keeps the work dir."""
    yield
    if "stack" not in request.fixturenames:
        return
    env = request.getfixturevalue("stack")
    for proc in (env.gateway.proc, env.agent.proc, env.idp.proc):
        if proc is not None and not proc.alive():
            h.KEEP_WORKDIR.append(f"shared {proc.name} exited")
            pytest.exit(f"the shared stack's {proc.name} exited (rc={proc.returncode()}) during or "
                        f"after {request.node.nodeid}; log {proc.log_path}:\n{h.tail(proc.log_path)}",
                        returncode=1)


@pytest.fixture(scope="session")
def stack(workdir):
    postgres = h.Postgres(workdir)
    idp = h.Idp(workdir)
    env = None
    try:
        postgres.start()
        idp.start()
        env = h.GatewayEnv(workdir, postgres, idp)
        env.start()
        yield env
    finally:
        if env is not None:
            env.stop()
        idp.stop()
        postgres.stop()


@pytest.fixture
def isolated_agent(stack):
    made: list[h.IsolatedAgent] = []

    def factory(grants=(("principal", "alice-bot", "read-write"),), start: bool = True,
                name: str | None = None, connection: str | None = None,
                extra_flags=()) -> h.IsolatedAgent:
        agent_name = name or h.unique("iso-agent-")
        conn_name = connection or h.unique("iso_")
        agent = stack.add_agent(agent_name, start=start, extra_flags=extra_flags)
        stack.create_connection(conn_name, agent_name)
        for kind, who, mode in grants:
            stack.grant(who, conn_name, mode, group=(kind == "group"))
        iso = h.IsolatedAgent(agent_name, conn_name, agent, list(grants))
        made.append(iso)
        return iso

    yield factory
    for iso in reversed(made):
        iso.agent.stop()
        if iso.agent in stack.agents:
            stack.agents.remove(iso.agent)
        if stack.gateway.alive():
            stack.ctl("connection", "delete", iso.connection)
            stack.ctl("agent", "delete", iso.name)


@pytest.fixture
def isolated_gateway(stack, workdir):
    made: list[h.GatewayEnv] = []

    def factory(flags=(), grants=tuple(h.DEFAULT_GRANTS), agent_name: str = "db1",
                connection: str = "shop") -> h.GatewayEnv:
        env = h.GatewayEnv(workdir, stack.postgres, stack.idp, flags, name=h.unique("gw-"))
        made.append(env)
        env.start(agent_name=agent_name, connection=connection, grants=grants)
        return env

    yield factory
    for env in reversed(made):
        env.stop()

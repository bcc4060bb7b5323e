"""Security review, gateway side: what an agent holding a valid token, a second identity
provider, a greedy principal, oversized input and odd names can no longer do. Every attack runs
through real processes: the shared stack (Postgres, IdP, gateway, agent db1), extra gateways where
flags differ, a second real IdP, and tests/tools/rogue_agent (an AgentService client that sends
what a compromised agent would).

Findings: 4 (forged events, other agents' sessions), 5 (agent delete), 7 (issuers kept apart),
9 (session caps), 11 (bounded fields, queues and responses), 13 (core dumps, names, takeover).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading

import pytest

import jwt_forge as jf
import pgward_harness as h
from pgward_harness import CTL_BIN, GATEWAY_BIN, session_id_of, unique, wait_until

# gRPC status codes as rogue_agent reports them.
NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED = 5, 6, 7, 8, 16


def _rogue_agent(stack) -> h.Agent:
    """A registered agent that no process runs: rogue_agent speaks for it with its real token."""
    return stack.add_agent(unique("rogue-"), start=False)


def _forget_agent(stack, agent: h.Agent) -> None:
    agent.stop()
    if agent in stack.agents:
        stack.agents.remove(agent)
    stack.ctl("agent", "delete", agent.name)


def _login(env, client: str | None, dbname: str | None = None, token: str | None = None) -> jf.LoginResult:
    return jf.raw_login("127.0.0.1", env.pg_port, dbname or env.connection,
                        token if token is not None else env.token(client))


def _fatal(result: jf.LoginResult, sqlstate: str, contains: str = "") -> str:
    err = result.error
    assert err is not None, f"expected FATAL {sqlstate}, got {[(m.kind, m.fields) for m in result.messages]}"
    assert (err.severity, err.sqlstate) == ("FATAL", sqlstate), err.fields
    assert not result.authenticated
    assert contains in err.message, err.message
    return err.message


def _log_since(text: str, mark: int) -> str:
    return text[mark:]


# ---------------------------------------------------------------------------------------------
# Finding 4: an agent speaks only for the sessions the gateway gave it.

def test_events_forged_for_another_agents_session_are_refused_and_counted(stack):
    rogue = _rogue_agent(stack)
    marker = unique("forged_")
    try:
        with stack.connect("alice-bot") as conn:
            sid = session_id_of(conn)
            conn.execute(f"SELECT 1 AS {marker}_real")
            mark = len(stack.gateway_log())
            # a2 writes DROP TABLE into alice's session on db1, and claims it ended.
            answer = stack.rogue(rogue.name, rogue.token_file, "forge-statement", "--session", sid,
                                 "--statement", f"DROP TABLE {marker}", "--ended")
            # The gateway handled the batch (acked, so the agent is not stuck on it) ...
            assert answer == {"result": "ack", "seq": 2}, answer
            # ... stored none of it, and says so.
            log = _log_since(stack.gateway_log(), mark)
            assert f"refused 2 event(s) from agent {rogue.name} for sessions the gateway did not give it" in log, log
            assert sid in log
            rows = stack.wait_audit_rows(lambda r: f"{marker}_real" in r["statement"], session=sid)
            assert rows[0]["agent"] == "db1"
            assert not [r for r in stack.audit(session=sid) if marker in r["statement"] and "_real" not in r["statement"]]
            assert not [r for r in stack.audit(limit=200) if f"DROP TABLE {marker}" in r["statement"]]
            # The forged SessionEnded changed nothing: the session is live and works.
            assert any(s["session_id"] == sid for s in stack.sessions(active=True))
            assert conn.execute("SELECT 2").fetchone() == (2,)

        # A session nobody brokered is refused the same way; the counter keeps counting.
        answer = stack.rogue(rogue.name, rogue.token_file, "forge-statement", "--session", "no-such-session")
        assert answer["result"] == "ack", answer
        assert "from this agent so far: 3" in stack.gateway_log()
    finally:
        _forget_agent(stack, rogue)


def test_agent_cannot_open_a_session_granted_to_another_agent(stack):
    # An upstream that accepts and stays silent keeps db1's login (and so the grant) pending.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    name = unique("pending_")
    stack.create_connection(name, "db1", port=listener.getsockname()[1], sslmode="disable")
    rogue = _rogue_agent(stack)
    caller = None
    held = None
    try:
        stack.grant("alice-bot", connection=name)
        mark = len(stack.gateway_log())
        # The caller logs in and waits for db1 to open its session.
        caller = jf.tls_connect("127.0.0.1", stack.pg_port)
        caller.sendall(jf.startup_packet({"user": "alice", "database": name}))
        data, _, _ = jf.read_until_closed(caller, 1.0)
        assert [m.kind for m in jf.parse_messages(data)[0]] == ["R"], data
        caller.sendall(jf.password_message(stack.token("alice-bot")))
        line = wait_until(lambda: next((ln for ln in _log_since(stack.gateway_log(), mark).splitlines()
                                        if f" on {name} granted to agent db1" in ln), None),
                          10, what="the gateway to grant the session to db1")
        sid = line.split(" session ", 1)[1].split(" ", 1)[0]
        listener.settimeout(10)
        held = listener.accept()[0]  # db1 is logging in upstream now
        # Another agent claims that session with its own (valid) token.
        answer = stack.rogue(rogue.name, rogue.token_file, "open-session", "--session", sid)
        assert answer["code"] == NOT_FOUND and answer["frames"] == 0, answer
        assert f"agent {rogue.name} tried to open session {sid} granted to agent db1" in stack.gateway_log()
        # The caller was not handed to the rogue: still waiting, nothing received.
        data, closed, _ = jf.read_until_closed(caller, 0.5)
        assert data == b"" and not closed, data
    finally:
        for s in (caller, held, listener):
            if s is not None:
                s.close()
        stack.ctl("connection", "delete", name)
        _forget_agent(stack, rogue)


def test_agentservice_refuses_wrong_names_and_tokens(stack):
    rogue = _rogue_agent(stack)
    other = _rogue_agent(stack)
    try:
        # The metadata name must match the token's agent ...
        wrong_token = stack.rogue(other.name, rogue.token_file, "hello")
        assert wrong_token["code"] == UNAUTHENTICATED, wrong_token
        # ... and the hello must name that agent too.
        renamed = stack.rogue(rogue.name, rogue.token_file, "--hello-name", other.name, "hello")
        assert renamed["code"] == PERMISSION_DENIED, renamed
        assert stack.rogue(rogue.name, rogue.token_file, "hello") == {"result": "welcome"}
    finally:
        _forget_agent(stack, rogue)
        _forget_agent(stack, other)


def test_a_flood_of_session_streams_with_a_made_up_token_does_not_starve_logins(stack, tmp_path):
    """Thousands of AgentService Session streams with a token nobody issued: each is refused
    (UNAUTHENTICATED, or RESOURCE_EXHAUSTED once too many wait for the store, which the gateway
    logs once per burst), no frame is read from any, and callers' logins, which share the
    gateway's store pool with those look-ups, are served meanwhile."""
    STREAMS = 20000
    token_file = tmp_path / "made-up.token"
    token_file.write_text("pgwa_" + "x" * 40 + "\n")
    token = stack.token("alice-bot")
    done: dict = {}

    def flood():
        try:
            done["answer"] = stack.rogue("db1", token_file, "flood-sessions", "--count", str(STREAMS), timeout=120)
        except BaseException as exc:  # noqa: BLE001 - reported below
            done["error"] = exc
    flooder = threading.Thread(target=flood)
    flooder.start()
    logins = 0
    while flooder.is_alive() and logins < 20:
        with stack.connect("alice-bot", token=token, connect_timeout=5) as conn:
            assert conn.execute("select count(*) from customers").fetchone()[0] >= 3
        logins += 1
    flooder.join(120)
    assert "error" not in done, done.get("error")
    answer = done["answer"]
    assert answer["streams"] == STREAMS, answer
    assert set(answer["codes"]) <= {str(UNAUTHENTICATED), str(RESOURCE_EXHAUSTED)}, answer
    if str(RESOURCE_EXHAUSTED) in answer["codes"]:
        assert "refusing agent streams from" in stack.gateway_log()
    assert logins >= 1, "no login completed while the flood ran"
    assert stack.gateway.alive()
    # The real agent named in the flood's metadata was never disturbed.
    assert stack.agent.online()


# ---------------------------------------------------------------------------------------------
# Finding 5: deleting an agent closes everything it has open, at once.

def test_deleting_an_agent_ends_its_sessions_and_stream_and_it_gets_no_more_grants(stack):
    victim = stack.add_agent(unique("doomed-"))
    spare = stack.add_agent(unique("spare-"), start=False)
    name = unique("del_")
    r = stack.ctl("connection", "create", name, "--agent", victim.name, "--host", "127.0.0.1",
                  "--port", str(stack.postgres.port), "--database", "shop", "--user", "app",
                  "--password-ref", "gateway:", "--password-stdin", "--sslmode", "require",
                  input=stack.postgres.app_password + "\n")
    assert r.returncode == 0, r.stderr
    sock = None
    try:
        stack.grant("alice-bot", connection=name)
        sock, _ = jf.raw_session("127.0.0.1", stack.pg_port, name, stack.token("alice-bot"))
        sock.sendall(jf.query_message("SELECT current_setting('pgward.session_id')"))
        data, _, _ = jf.read_until_closed(sock, 1.0)
        sid = next(m.body for m in jf.parse_messages(data)[0] if m.kind == "D")[6:].decode()
        # An agent in use by a connection cannot be deleted: move the connection away first
        # (live sessions keep running on the old agent).
        stack.ctl("connection", "update", name, "--agent", spare.name, check=True)

        mark = len(victim.log())
        deleted = stack.ctl("agent", "delete", victim.name)
        assert deleted.returncode == 0, deleted.stderr
        # The live session ends at once with 57P01.
        data, closed, elapsed = jf.read_until_closed(sock, 5.0)
        assert closed, "the session outlived its agent"
        errors = jf.errors_in(data)
        assert errors and errors[0].sqlstate == "57P01" and errors[0].severity == "FATAL", errors
        assert "agent was deleted" in errors[0].message
        assert stack.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "agent_deleted"
                                                  for s in ss), principal="alice-bot")
        assert victim.name not in [a["name"] for a in stack.ctl_json("agent", "list")]
        # The process is alive but can no longer get in.
        wait_until(lambda: "unknown agent or wrong token" in _log_since(victim.log(), mark), 20,
                   what="the deleted agent's reconnect to be refused")
        assert victim.alive()

        # Re-created under the same name (a new token the old process does not have): grants
        # must not reach the old process.
        stack.ctl("agent", "create", victim.name, check=True)
        stack.ctl("connection", "update", name, "--agent", victim.name, check=True)
        _fatal(_login(stack, "alice-bot", name), "08006", "offline")
        assert "session grant" not in _log_since(victim.log(), mark)
    finally:
        if sock is not None:
            sock.close()
        victim.stop()
        stack.ctl("connection", "delete", name)
        for agent in (victim, spare):
            _forget_agent(stack, agent)


# ---------------------------------------------------------------------------------------------
# Finding 7: a principal is (issuer, name).

@pytest.fixture(scope="module")
def second_idp(workdir):
    """A second real IdP (same client names as the first, its own keys and issuer URL)."""
    idp = h.Idp(workdir / unique("second-idp-"))
    idp.start()
    yield idp
    idp.stop()


def _ctl_as(env, token: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    token_file = tmp_path / unique("admin-token-")
    token_file.write_text(token)
    ctl_env = env.gateway.ctl_env()
    ctl_env["PGWARD_TOKEN_FILE"] = str(token_file)
    return subprocess.run([str(CTL_BIN), *args], capture_output=True, text=True, env=ctl_env, timeout=30)


def test_the_same_name_from_a_second_issuer_is_someone_else(stack, isolated_gateway, second_idp, tmp_path):
    idp1, idp2 = stack.issuer, second_idp.issuer
    env = isolated_gateway(flags=["--oidc-issuer", idp2,
                                  "--admin-principal", f"{idp1}#dave-bot",
                                  "--admin-group", f"{idp2}#operators"], grants=())
    # With two issuers a grant must say whose principal it means.
    bare = env.ctl("grant", "create", "--principal", "alice-bot", "--connection", "shop", "--mode", "read-write")
    assert bare.returncode == 1 and "--issuer" in bare.stderr and idp2 in bare.stderr, bare.stderr
    env.grant("alice-bot", "shop", "read-write", extra=["--issuer", idp1])
    env.grant("analysts", "shop", "read-only", group=True, extra=["--issuer", idp1])

    assert _login(env, "alice-bot").authenticated
    # IdP 2's alice-bot and IdP 2's analysts are other identities.
    _fatal(_login(env, None, token=second_idp.fetch_token("alice-bot")), "28000")
    _fatal(_login(env, None, token=second_idp.fetch_token("grp-bot")), "28000")
    assert _login(env, "grp-bot").authenticated

    # Admin rights follow (issuer, name) too.
    assert _ctl_as(env, stack.token("dave-bot"), tmp_path, "agent", "list").returncode == 0
    as_idp2_dave = _ctl_as(env, second_idp.fetch_token("dave-bot"), tmp_path, "agent", "list")
    assert as_idp2_dave.returncode == 1 and "not allowed" in as_idp2_dave.stderr, as_idp2_dave.stderr
    assert _ctl_as(env, second_idp.fetch_token("ops-bot"), tmp_path, "agent", "list").returncode == 0
    assert _ctl_as(env, stack.token("ops-bot"), tmp_path, "agent", "list").returncode == 1
    # Grants record who created them, issuer included.
    made = env.ctl_json("grant", "list", "--principal", "alice-bot")
    assert [g["issuer"] for g in made] == [idp1]
    assert _ctl_as(env, stack.token("dave-bot"), tmp_path, "grant", "create", "--principal", "bob-bot",
                   "--issuer", idp2, "--connection", "shop", "--mode", "read-only").returncode == 0
    assert env.ctl_json("grant", "list", "--principal", "bob-bot")[0]["created_by"] == f"{idp1}#dave-bot"
    only_idp2 = env.ctl_json("grant", "list", "--issuer", idp2)
    assert [g["principal"] for g in only_idp2] == ["bob-bot"]


def test_a_bare_admin_name_with_several_issuers_stops_the_gateway(stack, second_idp, tmp_path):
    r = subprocess.run([str(GATEWAY_BIN), "--data-dir", str(tmp_path / "data"), "--pg-listen", "127.0.0.1:0",
                        "--grpc-listen", "127.0.0.1:0", "--oidc-issuer", stack.issuer, "--oidc-issuer",
                        second_idp.issuer, "--oidc-audience", "pgward", "--admin-principal", "ops-admin"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "--admin-principal \"ops-admin\" does not say which issuer" in r.stderr, r.stderr
    assert f"{stack.issuer}#ops-admin" in r.stderr


def test_a_grant_without_issuer_matches_nobody_once_several_issuers_are_trusted(isolated_gateway, second_idp):
    env = isolated_gateway()
    assert _login(env, "alice-bot").authenticated
    # A grant made before issuers were recorded: no issuer in the store.
    env.gateway.stop()
    with sqlite3.connect(env.gateway.data_dir / "pgward.db") as db:
        changed = db.execute("UPDATE grants SET issuer = '' WHERE principal = 'alice-bot'").rowcount
    assert changed == 1
    # One trusted issuer: the issuer is implied and the grant still works.
    env.gateway.start()
    env.agent.wait_online(True)
    assert _login(env, "alice-bot").authenticated
    # Two: it matches nobody (fail closed), and the gateway says so at start-up.
    env.gateway.stop()
    env.gateway.extra_flags += ["--oidc-issuer", second_idp.issuer]
    env.gateway.start()
    assert "1 grant(s) name no issuer and now match nobody" in env.gateway_log()
    _fatal(_login(env, "alice-bot"), "28000")
    # Grants that name their issuer are unaffected.
    env.agent.wait_online(True)
    assert _login(env, "bob-bot").authenticated


# ---------------------------------------------------------------------------------------------
# Finding 9: session caps.

def _hold_sessions(env, client: str, count: int, dbname: str | None = None):
    """Opens `count` logins at once; returns (sockets of sessions that opened, refusals)."""
    opened, refused = [], []
    lock = threading.Lock()
    token = env.token(client)

    def one():
        try:
            sock, _ = jf.raw_session("127.0.0.1", env.pg_port, dbname or env.connection, token)
            with lock:
                opened.append(sock)
        except ConnectionError as exc:
            with lock:
                refused.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return opened, refused


def test_a_grants_session_cap_refuses_the_next_login_with_53300(stack):
    grant = stack.grant("erin-bot", extra=["--max-sessions", "2"])
    held: list = []
    try:
        assert grant["max_sessions"] == 2
        # Six logins race for two places: exactly two get in.
        held, refused = _hold_sessions(stack, "erin-bot", 6)
        assert len(held) == 2 and len(refused) == 4, (len(held), refused)
        assert all("'C': '53300'" in r for r in refused), refused
        third = _login(stack, "erin-bot")
        message = _fatal(third, "53300")
        assert message == ('pgward: principal "erin-bot" already has 2 sessions on connection "shop" '
                           "(the grant's limit); close one or ask for a higher limit"), message
        # Other principals are not affected.
        assert _login(stack, "bob-bot").authenticated
        # Closing one frees its place.
        held.pop().close()
        wait_until(lambda: _login(stack, "erin-bot").authenticated, 10, what="a freed place for erin-bot")
    finally:
        for sock in held:
            sock.close()
        stack.ctl("grant", "delete", grant["id"])


def test_gateway_caps_per_principal_and_per_connection(isolated_gateway):
    env = isolated_gateway(flags=["--max-sessions-per-principal", "1", "--max-sessions-per-connection", "3"])
    env.grant("dave-bot", "shop", "read-write", extra=["--max-sessions", "5"])
    held = []
    try:
        for client in ("alice-bot", "bob-bot", "grp-bot"):
            socks, refused = _hold_sessions(env, client, 1)
            assert socks and not refused, refused
            held += socks
        message = _fatal(_login(env, "alice-bot"), "53300")
        assert "(the gateway's per-principal limit)" in message, message
        message = _fatal(_login(env, "dave-bot"), "53300")
        assert message == ('pgward: connection "shop" already has 3 sessions (the gateway\'s per-connection '
                           "limit); try again later"), message
    finally:
        for sock in held:
            sock.close()


# ---------------------------------------------------------------------------------------------
# Finding 11: bounded fields, messages and responses.

def test_oversized_agent_messages_are_refused_and_big_fields_are_cut(stack):
    rogue = _rogue_agent(stack)
    try:
        # 30 MB in one message: over the AgentService bound (16 MiB), refused before it is
        # buffered, and only that stream is reset.
        huge = stack.rogue(rogue.name, rogue.token_file, "forge-statement", "--session", "x",
                           "--statement-bytes", str(30_000_000))
        assert huge["code"] == RESOURCE_EXHAUSTED, huge
        assert stack.gateway.proc.alive()
        # 5 MB fits the message bound; the stream carries on (the event itself is a forgery).
        big = stack.rogue(rogue.name, rogue.token_file, "forge-statement", "--session", "x",
                          "--statement-bytes", str(5_000_000))
        assert big["result"] == "ack", big
        assert stack.psql("alice-bot", "SELECT 1").stdout.strip() == "1"
    finally:
        _forget_agent(stack, rogue)


def test_a_5_mb_statement_is_refused_recorded_bounded_and_audit_list_still_works(stack):
    import psycopg

    # A comment survives normalization, so the statement really is this big. The agent
    # analyzes statements of up to 1 MiB (finding 3): this one is refused with 54000, the
    # session goes on, and the refusal is on the record, bounded.
    sql = "SELECT 1 /* " + "x" * 5_000_000 + " */"
    with stack.connect("alice-bot") as conn:
        sid = session_id_of(conn)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute(sql)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    row = stack.wait_audit_rows(lambda r: r["session_id"] == sid and r["sqlstate"] == "54000", limit=50)[0]
    assert row["decision"] == "denied"
    assert len(row["statement"].encode()) <= 16 * 1024, len(row["statement"])
    # The audit, with the most rows a page may ask for, still comes back as JSON.
    listing = stack.ctl("audit", "list", "--json", "--limit", "10000")
    assert listing.returncode == 0, listing.stderr
    assert isinstance(json.loads(listing.stdout), list)


# ---------------------------------------------------------------------------------------------
# Finding 13: core dumps, names, takeover.

def test_gateway_writes_no_core_dumps(stack):
    limits = open(f"/proc/{stack.gateway.pid}/limits").read()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max core file size"))
    assert line.split()[4:6] == ["0", "0"], line


@pytest.mark.parametrize("claims", [
    {"sub": "alice-bot", "groups": ["analysts", "ops\x1b[31m"]},
    {"sub": "alice-bot\r\nINFO frontend: forged line"},
    {"sub": "alice-bot\u202e"},
    {"sub": "alice-bot\u0085"},
], ids=["escape-in-group", "newline-in-principal", "bidi-override", "c1-control"])
def test_names_with_control_characters_are_refused_at_login(stack, claims):
    mark = len(stack.gateway_log())
    token = stack.mint_token(claims["sub"], groups=claims.get("groups"))
    message = _fatal(_login(stack, None, token=token), "28000", "authentication failed")
    assert "name" in message and "control" in message, message
    log = _log_since(stack.gateway_log(), mark)
    assert "forged line" not in log and "\x1b" not in log and "\u202e" not in log, log


def test_a_second_process_with_the_same_agent_token_is_refused(stack, isolated_agent):
    iso = isolated_agent()
    taken = stack.rogue(iso.name, iso.agent.token_file, "--boot-id", "thief", "hello")
    assert taken["code"] == ALREADY_EXISTS and "already connected" in taken["message"], taken
    assert f"refused a second connection of agent {iso.name}" in stack.gateway_log()
    # The first keeps working.
    with stack.connect("alice-bot", dbname=iso.connection) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # Once it is gone, another process may connect (and then the first is the one refused).
    iso.agent.stop()
    iso.agent.wait_online(False)
    assert stack.rogue(iso.name, iso.agent.token_file, "--boot-id", "successor", "hello",
                       "--hold-ms", "500") == {"result": "held"}
    iso.agent.start()

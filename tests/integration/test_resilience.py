"""Resilience (ARCHITECTURE.md section 4): query cancel through the gateway (psql, psycopg, JDBC),
forged cancel keys, an agent killed mid-session, and one misbehaving caller not hurting others.

Every wait polls real state (pg_stat_activity, agent list); timings are bounds, not sleeps.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import struct
import threading
import time
from pathlib import Path

import psycopg
import pytest

import jwt_forge as jf
import pgward_harness as h
from pgward_harness import session_id_of, unique, wait_until

HERE = Path(__file__).resolve().parent
JDBC_JAR = Path("/usr/share/java/postgresql.jar")


# ---------------------------------------------------------------------------------------------
# helpers

def backends_running(stack, tag: str) -> list[tuple]:
    """Postgres backends currently executing a statement containing `tag` (a unique comment)."""
    return stack.pg_sql(
        "select pid, state, wait_event, application_name from pg_stat_activity "
        "where state = 'active' and query like %s and pid <> pg_backend_pid()",
        params=(f"%{tag}%",))


def wait_running(stack, tag: str, timeout: float = 15) -> list[tuple]:
    return wait_until(lambda: backends_running(stack, tag), timeout,
                      what=f"a statement tagged {tag} to be running in Postgres")


def wait_gone(stack, tag: str, timeout: float = 15) -> None:
    wait_until(lambda: not backends_running(stack, tag), timeout,
               what=f"the statement tagged {tag} to stop running in Postgres")


class Background:
    """Runs fn in a thread; .result() returns (value, exception, seconds since start)."""

    def __init__(self, fn):
        self._out: queue.Queue = queue.Queue()
        self.started = time.monotonic()

        def run():
            try:
                self._out.put((fn(), None, time.monotonic()))
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                self._out.put((None, exc, time.monotonic()))
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float):
        try:
            value, exc, ended = self._out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"still running after {timeout} s (hang)") from None
        return value, exc, ended


# ---------------------------------------------------------------------------------------------
# Cancel

def test_psql_sigint_cancels_running_query(stack):
    tag = unique("psqlcancel")
    argv = ["psql", "-X", "-v", "VERBOSITY=verbose", "-c", f"select pg_sleep(30) /* {tag} */",
            stack.dsn("alice-bot")]
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_running(stack, tag)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("psql did not exit within 10 s of SIGINT: the cancel did not reach Postgres")
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, f"psql exited 0 after SIGINT: {out!r}"
    assert "57014" in err and "canceling statement due to user request" in err, f"psql stderr: {err!r}"
    assert elapsed < 5, f"psql took {elapsed:.1f} s to return after SIGINT"
    wait_gone(stack, tag, timeout=5)


def test_psycopg_cancel_and_session_survives(stack):
    tag = unique("pycancel")
    with stack.connect("alice-bot") as conn:
        bg = Background(lambda: conn.execute(f"select pg_sleep(30) /* {tag} */"))
        wait_running(stack, tag)
        sent = time.monotonic()
        conn.cancel()
        _, exc, ended = bg.result(10)
        assert isinstance(exc, psycopg.errors.QueryCanceled), f"expected QueryCanceled, got {exc!r}"
        assert exc.sqlstate == "57014"
        assert ended - sent < 5, f"the cancel took {ended - sent:.1f} s"
        # The session is intact after a cancel.
        assert conn.execute("select 1").fetchone() == (1,)


def _java_available() -> bool:
    return shutil.which("java") is not None and JDBC_JAR.exists()


@pytest.mark.skipif(not _java_available(), reason="java or /usr/share/java/postgresql.jar missing")
def test_jdbc_statement_cancel(stack):
    # assumeMinServerVersion=9.0: the driver's application_name goes in the startup packet instead
    # of a post-login SET (the driver-defaults case is test_clients.py's business).
    tag_free_url = (f"jdbc:postgresql://{stack.gateway_host}:{stack.gateway_pg_port}/shop"
                    "?sslmode=require&assumeMinServerVersion=9.0")
    env = dict(os.environ, PGWARD_TOKEN=stack.token("alice-bot"))
    proc = subprocess.Popen(["java", "-cp", str(JDBC_JAR), str(HERE / "java" / "CancelTest.java"), tag_free_url, "30"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()

    def next_line(timeout: float) -> str:
        try:
            return lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from CancelTest within {timeout} s; stderr so far: "
                                 f"{proc.stderr.read() if proc.poll() is not None else '(running)'}") from None
    try:
        assert next_line(60) == "READY"
        # pg_sleep(30) issued by JDBC: find it by its application name.
        wait_until(lambda: stack.pg_sql(
            "select pid from pg_stat_activity where state = 'active' and query like 'select pg_sleep(30)%%' "
            "and application_name like 'pgward:alice-bot%%'"), 15, what="the JDBC pg_sleep(30) to run")
        proc.stdin.write("cancel\n")
        proc.stdin.flush()
        sent = time.monotonic()
        first = next_line(10)
        assert first == "CANCEL_SENT", first
        result = next_line(10)
        elapsed = time.monotonic() - sent
        assert result.startswith("RESULT sqlstate=57014"), f"JDBC saw: {result}"
        assert elapsed < 5, f"JDBC query ended {elapsed:.1f} s after Statement.cancel()"
        assert next_line(10) == "AFTER ok", "the JDBC connection was unusable after the cancel"
        proc.stdin.close()
        assert proc.wait(15) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _send_cancel(port: int, payload: bytes) -> tuple[bytes, bool]:
    sock = jf.raw_connect("127.0.0.1", port)
    try:
        sock.sendall(payload)
        data, closed, _ = jf.read_until_closed(sock, 5)
    finally:
        sock.close()
    return data, closed


def test_forged_cancel_keys_cancel_nothing(stack):
    rng = random.Random(20240611)
    tag = unique("forgedcancel")
    with stack.connect("alice-bot") as conn:
        real_pid = conn.info.backend_pid  # the gateway's cancel pid for this session
        bg = Background(lambda: conn.execute(f"select pg_sleep(3) /* {tag} */").fetchone())
        wait_running(stack, tag)
        forged = [jf.cancel_request(rng.randrange(1, 2**31), rng.randrange(0, 2**32)) for _ in range(20)]
        forged += [jf.cancel_request(real_pid, rng.randrange(0, 2**32)) for _ in range(20)]  # right pid, wrong key
        forged += [jf.cancel_request(0, 0), jf.cancel_request(-1, 2**32 - 1)]
        for payload in forged:
            data, closed = _send_cancel(stack.gateway_pg_port, payload)
            assert closed, "the gateway kept a CancelRequest connection open"
            assert data == b"", f"a CancelRequest got an answer: {data[:80]!r}"
        assert backends_running(stack, tag), "the sleeping statement vanished after forged cancel requests"
        value, exc, ended = bg.result(15)
        assert exc is None, f"pg_sleep(3) failed after forged cancels: {exc!r} (sqlstate {getattr(exc, 'sqlstate', None)})"
        assert ended - bg.started >= 2.9, "pg_sleep(3) returned early"
        # Positive control: the real key does cancel.
        tag2 = unique("realcancel")
        bg2 = Background(lambda: conn.execute(f"select pg_sleep(30) /* {tag2} */"))
        wait_running(stack, tag2)
        conn.cancel()
        _, exc2, _ = bg2.result(10)
        assert isinstance(exc2, psycopg.errors.QueryCanceled), f"the real cancel key did not cancel: {exc2!r}"


# ---------------------------------------------------------------------------------------------
# A crash leaves its trace in the log

@pytest.mark.skipif(h.SANITIZED, reason="sanitizer builds print their own fatal-signal report")
@pytest.mark.parametrize("which", ["gateway", "agent"])
def test_a_fatal_signal_writes_its_stack_trace_to_the_log(isolated_gateway, which):
    """Core dumps are off (secrets), so the log is all a crash report has: the process names
    the signal and prints the thread's stack trace, then still dies of the signal."""
    env = isolated_gateway()
    proc = env.gateway.proc if which == "gateway" else env.agent.proc
    os.kill(proc.pid, signal.SIGSEGV)
    proc.popen.wait(15)
    assert proc.returncode() == -signal.SIGSEGV
    log = proc.log()[proc.log_start:]
    assert "*** SIGSEGV received, stack trace" in log, log[-3000:]
    frames = [line for line in log.splitlines() if re.search(r"\)\[0x[0-9a-f]+\]$", line)]
    assert len(frames) >= 2, log[-3000:]
    binary = "pgward-gateway" if which == "gateway" else "pgward-agent"
    assert any(binary + "(" in f for f in frames), "\n".join(frames)


# ---------------------------------------------------------------------------------------------
# Agent killed mid-session

def test_agent_killed_mid_session(stack, isolated_agent):
    """SIGKILL the agent while three callers (our wire client, psycopg, psql) each run
    pg_sleep(30) through it: every one is told FATAL 08006 at once, none hangs.
    (psycopg reports a FATAL that is followed by EOF as text only -- e.sqlstate is None even
    against plain Postgres -- so the exact SQLSTATE is read from the wire client and psql.)"""
    iso = isolated_agent()
    tag = unique("agentkill")
    token = stack.token("alice-bot")
    raw, _ = jf.raw_session(stack.gateway_host, stack.gateway_pg_port, iso.connection, token)
    conn = stack.connect("alice-bot", token=token, dbname=iso.connection)
    psql = subprocess.Popen(["psql", "-X", "-v", "VERBOSITY=verbose", "-c", f"select pg_sleep(30) /* {tag} psql */",
                             stack.dsn("alice-bot", token=token, dbname=iso.connection)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert conn.execute("select current_setting('pgward.principal')").fetchone() == ("alice-bot",)
        raw.sendall(jf.query_message(f"select pg_sleep(30) /* {tag} raw */"))
        bg = Background(lambda: conn.execute(f"select pg_sleep(30) /* {tag} psycopg */"))
        wait_until(lambda: len(backends_running(stack, tag)) == 3, 15, what="three pg_sleep(30) through the agent")
        killed = time.monotonic()
        os.kill(iso.pid, signal.SIGKILL)

        data, closed, raw_elapsed = jf.read_until_closed(raw, 12)
        errors = jf.errors_in(data)
        assert errors, f"wire client: no ErrorResponse after the agent died (closed={closed}, {data[:100]!r})"
        assert errors[0].severity == "FATAL" and errors[0].sqlstate == "08006", f"wire client got {errors[0].fields}"
        assert closed and raw_elapsed < 10, f"wire client: closed={closed} after {raw_elapsed:.1f} s"

        _, exc, ended = bg.result(15)
        assert isinstance(exc, psycopg.OperationalError), f"psycopg: expected OperationalError, got {exc!r}"
        assert "agent disconnected" in str(exc) or "08006" in str(exc), f"psycopg saw {exc}"
        assert ended - killed < 10, f"psycopg waited {ended - killed:.1f} s to learn that the agent died"
        assert conn.closed or conn.broken, "psycopg's connection should be dead after FATAL 08006"

        try:
            _, err = psql.communicate(timeout=max(1, 12 - (time.monotonic() - killed)))
        except subprocess.TimeoutExpired:
            raise AssertionError("psql still waiting ~12 s after the agent was killed")
        assert psql.returncode != 0 and "FATAL:  08006" in err, f"psql: rc={psql.returncode} {err!r}"
    finally:
        raw.close()
        conn.close()
        if psql.poll() is None:
            psql.kill()
            psql.wait()

    # While the agent is down, new logins fail fast with FATAL 08006 saying it is offline.
    iso.agent.wait_online(False, timeout=10)
    start = time.monotonic()
    result = jf.raw_login(stack.gateway_host, stack.gateway_pg_port, iso.connection, stack.token("alice-bot"))
    took = time.monotonic() - start
    err = result.error
    assert err is not None, f"no error for a login to an offline agent: {[(m.kind, m.fields) for m in result.messages]}"
    assert err.severity == "FATAL" and err.sqlstate == "08006", f"offline agent login: {err.fields}"
    assert "offline" in err.message.lower(), f"message should say the agent is offline: {err.message!r}"
    assert took < 5, f"login to an offline agent took {took:.1f} s"
    r = stack.psql("alice-bot", "select 1", dsn_overrides={"dbname": iso.connection})
    assert r.returncode != 0 and "offline" in r.stderr.lower(), f"psql: {r.returncode} {r.stderr!r}"

    # Other connections (agent db1) are unaffected.
    with stack.connect("alice-bot") as other:
        assert other.execute("select 1").fetchone() == (1,)

    # The agent comes back and the connection works again.
    iso.agent.start()
    with stack.connect("alice-bot", dbname=iso.connection) as again:
        assert again.execute("select current_setting('pgward.principal')").fetchone() == ("alice-bot",)


# ---------------------------------------------------------------------------------------------
# One bad caller does not hurt the others

SSL_RACE_HINT = ("; 'wrong version number' = the gateway answered a well-behaved ClientHello with a plaintext "
                 "08P01 'received unencrypted data after SSL request' (see "
                 "test_refusals.py::test_clienthello_after_s_is_never_mistaken_for_pipelined_plaintext)")


def _timed_select(stack, token: str, sql: str = "select count(*) from customers"):
    start = time.monotonic()
    try:
        with stack.connect("alice-bot", token=token) as conn:
            value = conn.execute(sql).fetchone()
    except psycopg.OperationalError as exc:
        hint = SSL_RACE_HINT if "wrong version number" in str(exc) else ""
        raise AssertionError(f"a normal caller failed: {exc}{hint}") from exc
    return value, time.monotonic() - start


def test_gateway_serves_others_while_callers_misbehave(stack):
    rng = random.Random(7)
    port = stack.gateway_pg_port
    bad: list = []
    try:
        for _ in range(10):  # garbage senders
            s = jf.raw_connect("127.0.0.1", port)
            s.sendall(bytes(rng.randrange(256) for _ in range(512)))
            bad.append(s)
        for _ in range(10):  # stalled halfway through the startup packet
            s = jf.raw_connect("127.0.0.1", port)
            s.sendall(jf.startup_packet({"user": "x", "database": "shop"})[:9])
            bad.append(s)
        for _ in range(10):  # SSLRequest, then never start the handshake
            s = jf.raw_connect("127.0.0.1", port)
            s.sendall(jf.ssl_request())
            bad.append(s)
        for _ in range(5):  # TLS done, then silence
            bad.append(jf.tls_connect("127.0.0.1", port))
        for _ in range(5):  # asked for the password, never sends it
            s = jf.tls_connect("127.0.0.1", port)
            s.sendall(jf.startup_packet({"user": "x", "database": "shop"}))
            bad.append(s)
        # a half-sent huge password message (declares 60 KB, sends 10 bytes)
        s = jf.tls_connect("127.0.0.1", port)
        s.sendall(jf.startup_packet({"user": "x", "database": "shop"}))
        s.sendall(b"p" + (60000).to_bytes(4, "big") + b"eyJhbGciOi")
        bad.append(s)

        token = stack.token("alice-bot")
        start = time.monotonic()
        timings = []
        for _ in range(10):
            value, took = _timed_select(stack, token)
            assert value[0] >= 3, value
            timings.append(took)
        assert max(timings) < 3, f"normal logins slowed down by misbehaving callers: {timings}"
        # Several at once, too.
        bgs = [Background(lambda: _timed_select(stack, token)) for _ in range(6)]
        for bg in bgs:
            value, exc, _ = bg.result(20)
            assert exc is None, f"a concurrent normal caller failed: {exc}"
            assert value[1] < 5, f"a concurrent normal caller took {value[1]:.1f} s"
        # The misbehaving sockets were not served: none of them got AuthenticationOk.
        assert time.monotonic() - start < 20
    finally:
        for s in bad:
            try:
                s.close()
            except OSError:
                pass


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_callers_that_vanish_mid_result_leave_the_gateway_serving(stack):
    """Callers that leave while a result streams to them (Terminate and close, close, reset),
    from several threads at once: the relay's two directions end while a frame is arriving
    from the agent or being written to the caller. (The gateway once freed the session stream
    under a frame still in use when the agent's last frame and the caller's end crossed: a
    window of microseconds that this cannot hit on demand, but the paths around it are these,
    and the suite's shared-stack check names such a crash.) Every session ends as the caller's
    doing and the gateway goes on serving."""
    token = stack.token("alice-bot")
    tag = unique("vanish")
    sql = f"select g, repeat('v', 500) from generate_series(1, 20000) g /* {tag} */"
    errors: list[BaseException] = []

    def caller(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for _ in range(PER_WORKER):
                sock, _ = jf.raw_session(stack.gateway_host, stack.gateway_pg_port, "shop", token)
                sock.sendall(jf.query_message(sql))
                want = rng.choice([0, 1, 8192, 65536, 262144])
                got = 0
                while got < want:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                how = rng.choice(["terminate", "close", "reset"])
                if how == "terminate":
                    sock.sendall(b"X" + struct.pack("!I", 4))
                elif how == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    WORKERS, PER_WORKER = 4, 15
    threads = [threading.Thread(target=caller, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert stack.gateway.alive(), stack.gateway_log()[-3000:]
    wait_gone(stack, tag, timeout=30)
    total = WORKERS * PER_WORKER
    ended = stack.wait_sessions(
        lambda ss: len(ss) >= total and all(s.get("end_reason") in ("client_disconnect", "client_terminate")
                                            for s in ss[:total]) and ss[:total],
        timeout=30, principal="alice-bot")
    assert len(ended) == total
    value, took = _timed_select(stack, token)
    assert value[0] >= 3 and took < 3


def test_slow_reader_does_not_block_others(stack):
    """A caller that asks for a big result and never reads it must not stall other callers (same
    gateway, same agent, same connection), and must not make pgward buffer the whole result."""
    tag = unique("slowreader")
    rows, width = 100_000, 1000  # ~100 MB of DataRows
    token = stack.token("alice-bot")
    gw_pid, agent_pid = stack.gateway.pid, stack.agent.pid
    rss_before = {"gateway": _rss_kib(gw_pid), "agent": _rss_kib(agent_pid)}
    slow, _ = jf.raw_session(stack.gateway_host, stack.gateway_pg_port, "shop", token, rcvbuf=4096)
    try:
        slow.sendall(jf.query_message(
            f"select g, repeat('x', {width}) from generate_series(1, {rows}) g /* {tag} */"))
        wait_running(stack, tag)
        # Back-pressure should reach Postgres: its backend ends up waiting to write (ClientWrite).
        # If instead the statement finishes, someone between Postgres and the caller buffered it all.
        def blocked_or_done():
            running = backends_running(stack, tag)
            if not running:
                return "finished"
            return "ClientWrite" if any(r[2] == "ClientWrite" for r in running) else None
        state = wait_until(blocked_or_done, 30, what="the slow reader's backend to block on ClientWrite or finish")

        # Other callers are served normally meanwhile, including a result they do read.
        for _ in range(5):
            value, took = _timed_select(stack, token)
            assert value[0] >= 3 and took < 3, f"a normal caller took {took:.1f} s behind the slow reader"
        start = time.monotonic()
        with stack.connect("alice-bot", token=token) as conn:
            got = conn.execute("select g, repeat('y', 1000) from generate_series(1, 5000) g").fetchall()
        assert len(got) == 5000 and time.monotonic() - start < 5, "a 5 MB result was slow behind the slow reader"
        psql = stack.psql("bob-bot", "select count(*) from orders")
        assert psql.returncode == 0 and psql.stdout.strip() == "4", psql.stderr

        rss_after = {"gateway": _rss_kib(gw_pid), "agent": _rss_kib(agent_pid)}
        growth_mb = {k: (rss_after[k] - rss_before[k]) / 1024 for k in rss_after}
        assert state == "ClientWrite", (
            f"the {rows * width // 1_000_000} MB result was fully produced although the caller read "
            f"nothing: pgward buffers without back-pressure (RSS growth MB: {growth_mb})")
        for proc_name, grown in growth_mb.items():
            assert grown < 64, f"{proc_name} RSS grew {grown:.0f} MB while a caller did not read ({growth_mb})"
    finally:
        slow.close()
    # Closing the slow reader ends its upstream statement too.
    wait_gone(stack, tag, timeout=15)
    value, took = _timed_select(stack, token)
    assert value[0] >= 3


def test_sessions_open_when_the_gateway_dies_are_closed_in_the_store_after_its_restart(isolated_gateway):
    env = isolated_gateway()
    conn = env.connect("alice-bot")
    sid = session_id_of(conn)
    assert [s for s in env.ctl_json("session", "list", "--active") if s["session_id"] == sid]
    env.gateway.kill()  # SIGKILL: nothing is recorded on the way down
    try:
        conn.execute("SELECT 1")
        raise AssertionError("the session outlived its gateway")
    except psycopg.OperationalError:
        pass
    finally:
        conn.close()
    env.gateway.start()
    env.agent.wait_online(True)
    [record] = [s for s in env.ctl_json("session", "list", "--principal", "alice-bot") if s["session_id"] == sid]
    # Closed at start-up; the agent's own report (it saw its Session stream break) may replace the
    # reason once it reconnects, never the fact that the session ended.
    assert record["ended"], record
    assert record["end_reason"] in ("gateway_restart", "client_disconnect"), record
    assert not [s for s in env.ctl_json("session", "list", "--active") if s["session_id"] == sid]
    # And the restarted gateway serves new sessions through the same agent.
    with env.connect("alice-bot") as again:
        assert again.execute("SELECT 1").fetchone() == (1,)

"""The clients of bench/run.sh's bulk and sessions scenarios (bench/bulk_reader, bench/sessions.py)
measure what they claim: every row arrives and is counted, the slow reader keeps its rate, the
proxies' RSS is sampled, bad arguments and failed logins are reported. They run here through the
shared gateway on a few MB, so that a broken tool fails CI rather than a benchmark run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgward_harness import BUILD_DIR, REPO_ROOT, unique

BULK_READER = BUILD_DIR / "bench" / "bulk_reader"
SESSIONS_PY = REPO_ROOT / "bench" / "sessions.py"


def pg_env(stack, client: str, token: str | None = None) -> dict:
    """The PG* environment both tools read their connection from: the gateway, as `client`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST="127.0.0.1", PGPORT=str(stack.pg_port), PGDATABASE=stack.connection, PGUSER=client,
               PGPASSWORD=token or stack.token(client), PGSSLMODE="require")
    return env


def bulk_reader(stack, *args: str, client: str = "alice-bot", token: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    if not os.access(BULK_READER, os.X_OK):
        pytest.fail(f"{BULK_READER} is not built: ninja -C {BUILD_DIR} bulk_reader", pytrace=False)
    return subprocess.run([str(BULK_READER), *args], env=pg_env(stack, client, token), capture_output=True,
                          text=True, timeout=timeout)


def watch(stack) -> list[str]:
    return ["--watch", f"gateway={stack.gateway.pid}", "--watch", f"agent={stack.agent.pid}"]


@pytest.mark.parametrize("mode, line_bytes", [("copy", 501), ("select", 500)])
def test_bulk_reader_counts_every_row_and_samples_the_proxies(stack, mode, line_bytes):
    r = bulk_reader(stack, "--mode", mode, "--rows", "3000", "--row-bytes", "500", *watch(stack))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # A COPY line carries its newline; a DataRow column value is exactly the generated text.
    assert out["mode"] == mode and out["rows"] == 3000 and out["bytes"] == 3000 * line_bytes
    assert out["seconds"] > 0 and out["mb_per_s"] > 0 and out["rate_limit_mb_s"] == 0
    for name in ("gateway", "agent"):
        rss = out["rss_kb"][name]
        assert 0 < rss["start"] <= rss["peak"] and 0 < rss["end"] <= rss["peak"], out


def test_bulk_reader_keeps_to_its_rate(stack):
    # 2 MB at 1 MB/s: the reader sleeps whenever it is ahead, so it cannot finish in under ~2 s.
    r = bulk_reader(stack, "--mode", "copy", "--rows", "2000", "--row-bytes", "999", "--rate-mb-s", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bytes"] == 2_000_000 and out["rate_limit_mb_s"] == 1.0
    assert out["seconds"] >= 1.95 and out["mb_per_s"] <= 1.03, out


def test_bulk_reader_reports_a_failed_login(stack):
    r = bulk_reader(stack, "--mode", "select", "--rows", "10", "--row-bytes", "10", token="not-a-token")
    assert r.returncode == 1 and r.stdout == ""
    assert "bulk_reader: connect failed" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--mode", "scan", "--rows", "1", "--row-bytes", "1"], "--mode must be copy or select"),
    (["--mode", "copy", "--rows", "0", "--row-bytes", "1"], "--rows must be an integer"),
    (["--mode", "copy", "--rows", "1"], "--mode, --rows and --row-bytes are required"),
    (["--mode", "copy", "--rows", "1", "--row-bytes", "1", "--watch", "gateway"], "--watch takes NAME=PID"),
    (["--mode", "copy", "--rows", "1", "--row-bytes", "1", "--rate-mb-s", "-3"], "--rate-mb-s must be a positive"),
])
def test_bulk_reader_refuses_bad_arguments(stack, args, message):
    r = bulk_reader(stack, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_sessions_tool_opens_its_sessions_and_runs_one_statement_on_each(stack):
    tag = unique("bench_sessions_")
    r = subprocess.run([sys.executable, str(SESSIONS_PY), "--sessions", "6", "--parallel", "3", "--settle", "0.2",
                        "--sql", f"SELECT count(*) AS {tag} FROM customers", *watch(stack)],
                       env=pg_env(stack, "alice-bot"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sessions"] == 6 and out["opened"] == 6 and out["failed_attempts"] == 0, out
    assert out["open_seconds"] > 0 and out["sessions_per_s"] > 0
    for name in ("gateway", "agent"):
        rss = out["rss_kb"][name]
        assert all(rss[k] > 0 for k in ("before", "held", "after_close")) and rss["peak"] >= rss["held"], out
    # Six sessions through the gateway, one statement each.
    rows = stack.wait_audit_rows(lambda row: tag in row["statement"], count=6, principal="alice-bot")
    assert len({row["session_id"] for row in rows}) == 6


def test_sessions_tool_counts_failed_logins_and_exits_1(stack):
    r = subprocess.run([sys.executable, str(SESSIONS_PY), "--sessions", "2", "--settle", "0", "--sql", "SELECT 1"],
                       env=pg_env(stack, "alice-bot", token="not-a-token"), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["opened"] == 0 and out["failed_attempts"] == 10 and out["first_error"], out

#!/usr/bin/python3
"""Many concurrent sessions, and what they cost a proxy in memory (issue 6, target 6).

    sessions.py --sessions N [--parallel P] [--scale S | --sql SQL] [--watch NAME=PID]...
                [--settle S]

Opens N libpq sessions (psycopg 3, asyncio; conninfo from the PG* environment), at most P
connects in flight at a time, and runs one statement on each as soon as it is open: pgbench's
-S SELECT on pgbench_accounts (of pgbench scale S), or --sql.
All N stay open together; once the last one has answered, it waits --settle seconds, reads the
resident set size of every watched process, then closes all of them and reads it again.

A connect or statement that fails is retried (up to 5 attempts per session) and counted. Prints
one JSON line:
    sessions, opened, failed_attempts, first_error, open_seconds, sessions_per_s,
    close_seconds, rss_kb: {NAME: {before, peak, held, after_close}}
`peak` is the highest VmRSS seen by a sampler thread (every 50 ms) from before the first connect
to after the last close; `held` is read with all N sessions open. Exit status 1 if not all N
sessions could be opened. Run with /usr/bin/python3 (Debian's python3-psycopg).
"""
import argparse
import asyncio
import json
import resource
import sys
import threading
import time

import psycopg

ATTEMPTS = 5


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Sampler(threading.Thread):
    """Highest VmRSS per watched process, sampled every 50 ms on its own thread (the event loop
    is busy with connects and must not delay the samples)."""

    def __init__(self, watched: dict):
        super().__init__(daemon=True)
        self.watched = watched
        self.peak = {name: rss_kb(pid) for name, pid in watched.items()}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for name, pid in self.watched.items():
                self.peak[name] = max(self.peak[name], rss_kb(pid))


def parse_watch(text: str):
    name, sep, pid = text.partition("=")
    if not sep or not name or not pid.isdigit() or int(pid) <= 0:
        raise argparse.ArgumentTypeError(f"--watch takes NAME=PID, got {text!r}")
    return name, int(pid)


async def open_all(n: int, parallel: int, naccounts: int, sql: str | None, stats: dict):
    gate = asyncio.Semaphore(parallel)

    async def one(i: int):
        async with gate:
            for _ in range(ATTEMPTS):
                conn = None
                try:
                    conn = await psycopg.AsyncConnection.connect("", autocommit=True)
                    if sql is None:
                        cur = await conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s",
                                                 (i % naccounts + 1,))
                    else:
                        cur = await conn.execute(sql)
                    await cur.fetchone()
                    return conn
                except psycopg.Error as e:
                    stats["failed_attempts"] += 1
                    if not stats["first_error"]:
                        stats["first_error"] = " ".join(str(e).split())[:160]
                    if conn is not None:
                        await conn.close()
            return None

    results = await asyncio.gather(*(one(i) for i in range(n)))
    return [c for c in results if c is not None]


async def run(args) -> dict:
    watched = dict(args.watch or [])
    before = {name: rss_kb(pid) for name, pid in watched.items()}
    sampler = Sampler(watched)
    sampler.start()
    stats = {"failed_attempts": 0, "first_error": ""}
    t0 = time.monotonic()
    conns = await open_all(args.sessions, args.parallel, args.scale * 100000, args.sql, stats)
    open_s = time.monotonic() - t0
    await asyncio.sleep(args.settle)
    held = {name: rss_kb(pid) for name, pid in watched.items()}
    t1 = time.monotonic()
    await asyncio.gather(*(c.close() for c in conns))
    close_s = time.monotonic() - t1
    await asyncio.sleep(args.settle)
    after = {name: rss_kb(pid) for name, pid in watched.items()}
    sampler.stop.set()
    sampler.join()
    return {
        "sessions": args.sessions,
        "opened": len(conns),
        "failed_attempts": stats["failed_attempts"],
        "first_error": stats["first_error"],
        "open_seconds": round(open_s, 3),
        "sessions_per_s": round(len(conns) / open_s, 1),
        "close_seconds": round(close_s, 3),
        "rss_kb": {name: {"before": before[name], "peak": sampler.peak[name], "held": held[name],
                          "after_close": after[name]} for name in watched},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--parallel", type=int, default=16, help="connects in flight at once (default 16)")
    p.add_argument("--scale", type=int, default=10, help="pgbench scale of the database (default 10)")
    p.add_argument("--sql", help="the statement each session runs instead of pgbench's -S SELECT "
                   "(it must return a row)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait before reading RSS (default 1)")
    p.add_argument("--watch", type=parse_watch, action="append", help="NAME=PID, repeatable")
    args = p.parse_args()
    if args.sessions < 1 or args.parallel < 1 or args.scale < 1 or args.settle < 0:
        p.error("--sessions, --parallel and --scale must be positive, --settle not negative")
    # Every session is a socket; make sure the soft limit does not stop us before the proxy does.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.sessions + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            p.error(f"the open-files limit ({hard}) is below the {need} this needs; raise ulimit -n")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0 if result["opened"] == args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())

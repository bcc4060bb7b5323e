#!/usr/bin/python3
"""Connection-setup rate that survives failed connects (pgbench -C aborts a client on the first).

Like `pgbench -S -C -c CLIENTS -T SECONDS`: each of CLIENTS threads repeatedly opens a fresh
libpq connection (psycopg 3, conninfo from the PG* environment), runs one pgbench -S
statement, and closes. Failed connects are counted, not fatal. Prints one tab-separated line:
    ok  failed  conn_per_s  mean_connect_ms  mean_cycle_ms  first_error
Run with /usr/bin/python3 (Debian's python3-psycopg).
"""
import random
import sys
import threading
import time

import psycopg


def main() -> int:
    clients = int(sys.argv[1])
    seconds = float(sys.argv[2])
    naccounts = int(sys.argv[3]) * 100000
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0, "connect_s": 0.0, "cycle_s": 0.0, "first_error": ""}
    deadline = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                conn = psycopg.connect("", autocommit=True)
            except psycopg.Error as e:
                with lock:
                    stats["failed"] += 1
                    if not stats["first_error"]:
                        stats["first_error"] = " ".join(str(e).split())[:160]
                continue
            t1 = time.monotonic()
            try:
                conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s",
                             (rng.randint(1, naccounts),)).fetchone()
            finally:
                conn.close()
            t2 = time.monotonic()
            with lock:
                stats["ok"] += 1
                stats["connect_s"] += t1 - t0
                stats["cycle_s"] += t2 - t0

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ok = stats["ok"]
    print("\t".join([
        str(ok), str(stats["failed"]), f"{ok / elapsed:.1f}",
        f"{1000 * stats['connect_s'] / ok:.3f}" if ok else "-",
        f"{1000 * stats['cycle_s'] / ok:.3f}" if ok else "-",
        stats["first_error"] or "-",
    ]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

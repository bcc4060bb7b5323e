#!/usr/bin/env python3
"""Groups perf samples into cost centres. Reads `perf script -F comm,tid,ip,sym,dso` (with call
chains) on stdin; prints two tables: self time per bucket (each sample counted once, in the bucket
of the code that was running, kernel time split by the syscall it serves) and inclusive time (the
share of samples with a matching frame anywhere on the stack). Used by bench/profile.sh."""
import re
import sys
from collections import Counter

# Leaf rules: what was executing. malloc is kept apart whoever called it.
MALLOC = re.compile(r"^(malloc|free|cfree|calloc|realloc|_int_malloc|_int_free|_int_realloc|"
                    r"malloc_consolidate|tcache_|__libc_malloc|__libc_free|__libc_calloc|"
                    r"__libc_realloc|operator new|operator delete|unlink_chunk|sysmalloc)")
# Abseil's debug-only deadlock detection: the lock graph, its ids, and the stack traces it takes.
DEADLOCK = re.compile(r"GraphCycles|DeadlockCheck|GetGraphId|SynchEvent|ForgetDeadlockInfo|"
                      r"GetStackTrace|UnwindImpl|DebugOnlyLockEnter|DebugOnlyLockLeave|DebugOnlyIsExiting")
# Walk rules (leaf -> root, first frame that matches decides). Order matters only within a frame.
WALK = [
    ("abseil: mutex deadlock detection", lambda s, d: "graphcycles" in d or DEADLOCK.search(s)),
    ("abseil: mutex/condvar", lambda s, d: re.search(r"absl::[\w:]*(Mutex|CondVar|Notification)|"
                                                     r"AbslInternalPerThreadSem", s) or "synchronization" in d),
    ("TLS (OpenSSL)", lambda s, d: "libssl" in d or "libcrypto" in d),
    ("protobuf", lambda s, d: "libprotobuf" in d or "google::protobuf" in s or "pgward::v1::" in s),
    ("gRPC", lambda s, d: re.search(r"libgrpc|libgpr|libupb|libaddress_sorting", d) or
        re.search(r"\bgrpc[_:]|grpc_core|grpc_event_engine|\bgpr_", s)),
    ("libpg_query/analysis", lambda s, d: re.search(
        r"pg_query|raw_parser|base_yy|core_yy|scanner_|pgward::inspect::", s)),
    ("SQLite/audit", lambda s, d: "sqlite" in d or s.startswith("sqlite3") or
        re.search(r"pgward::store::|AuditWriter", s)),
    ("pgwire parsing/building", lambda s, d: "pgward::pgwire::" in s),
    ("asio (event loop, sockets)", lambda s, d: "asio::" in s),
    ("pgward relay/session code", lambda s, d: "pgward::" in s),
]
SYSCALL = re.compile(r"^(?:__x64_sys_|__do_sys_|__se_sys_|ksys_)(\w+)")
SYSCALL_GROUPS = [
    ("kernel: futex (thread wait/wake)", r"futex"),
    ("kernel: epoll/poll", r"epoll|poll|select"),
    ("kernel: send/write (TCP loopback)", r"send|write"),
    ("kernel: recv/read", r"recv|read"),
]
INCLUSIVE = [
    ("gRPC (any frame)", r"libgrpc|libgpr|\bgrpc[_:]|grpc_core"),
    ("TLS / OpenSSL", r"libssl|libcrypto"),
    ("protobuf", r"libprotobuf|google::protobuf"),
    ("asio", r"asio::"),
    ("libpg_query parse", r"pg_query|raw_parser"),
    ("pgward::inspect (analysis)", r"pgward::inspect::"),
    ("SQLite", r"sqlite"),
    ("abseil deadlock detection", DEADLOCK.pattern + r"|libabsl_graphcycles"),
    ("abseil Mutex/CondVar", r"absl::[\w:]*(Mutex|CondVar)"),
    ("malloc/free", r"^(malloc|free|cfree|_int_malloc|_int_free|__libc_malloc|__libc_free|operator new|operator delete)"),
    ("syscall futex", r"sys_futex"),
    ("syscall epoll", r"sys_epoll"),
    ("syscall send/write", r"sys_(sendmsg|sendto|write|writev)\b"),
    ("syscall recv/read", r"sys_(recvmsg|recvfrom|read|readv)\b"),
    ("scheduler (schedule)", r"^__?schedule\b|finish_task_switch"),
]


def parse(stream):
    """Yields (comm, frames) per sample; frames are (sym, dso), leaf first."""
    comm, frames = None, []
    for line in stream:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
            continue
        if not line[0].isspace():
            if comm is not None:
                yield comm, frames
            parts = line.split()
            comm, frames = " ".join(parts[:-1]) or parts[0], []
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, m.group(2)))
    if comm is not None:
        yield comm, frames


def self_bucket(frames):
    if not frames:
        return "(no stack)"
    sym, dso = frames[0]
    if "kernel" in dso or dso.startswith("[vdso"):
        for s, _ in frames:
            m = SYSCALL.match(s)
            if m:
                for name, pattern in SYSCALL_GROUPS:
                    if re.search(pattern, m.group(1)):
                        return name
                return f"kernel: other syscall ({m.group(1)})"
        return "kernel: no syscall (irq return, preemption, page faults)"
    if MALLOC.match(sym):
        return "malloc/free"
    for s, d in frames:
        for name, rule in WALK:
            if rule(s, d):
                return name
    # An inlined frame has no dso of its own: name the first real one.
    real = next((d for _, d in frames if d != "inlined"), dso)
    return f"other: {real.rsplit('/', 1)[-1]}"


def main():
    total = 0
    self_counts, incl_counts, comms = Counter(), Counter(), Counter()
    for comm, frames in parse(sys.stdin):
        total += 1
        comms[comm.split()[0]] += 1
        self_counts[self_bucket(frames)] += 1
        text = [f"{s} {d}" for s, d in frames]
        for name, pattern in INCLUSIVE:
            rx = re.compile(pattern)
            if any(rx.search(s) or rx.search(t) for (s, _), t in zip(frames, text)):
                incl_counts[name] += 1
    if total == 0:
        print("no samples")
        return
    print(f"samples: {total}")
    print("\nself time by cost centre (each sample once; kernel time by the syscall it serves):")
    for name, n in self_counts.most_common():
        print(f"  {100.0 * n / total:6.1f}%  {name}")
    print("\ninclusive (share of samples with such a frame anywhere on the stack):")
    for name, _ in INCLUSIVE:
        print(f"  {100.0 * incl_counts[name] / total:6.1f}%  {name}")
    print("\nsamples by thread name:")
    for name, n in comms.most_common(12):
        print(f"  {100.0 * n / total:6.1f}%  {name}")


if __name__ == "__main__":
    main()

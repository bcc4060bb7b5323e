"""Process harness for pgward's integration tests.

Starts real processes in a temp directory and stops exactly what it started, by pid:
a throwaway PostgreSQL 15 cluster (TLS, SCRAM, log_statement=all), the test IdP
(tests/idp, oidc-provider), pgward-gateway and pgward-agent, and drives them with
pgwardctl, psql and psycopg 3. conftest.py turns these into pytest fixtures; see its
docstring for the fixture API. Nothing here depends on pytest except `pytest.fail` in
`fail()` (so harness errors read as one clear line, not a traceback).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("PGWARD_BUILD_DIR", REPO_ROOT / "build")).resolve()
PG_BIN = Path(os.environ.get("PGWARD_PG_BIN", "/usr/lib/postgresql/15/bin"))
GATEWAY_BIN = BUILD_DIR / "gateway" / "pgward-gateway"
AGENT_BIN = BUILD_DIR / "agent" / "pgward-agent"
CTL_BIN = BUILD_DIR / "tools" / "pgwardctl" / "pgwardctl"
ROGUE_BIN = BUILD_DIR / "tests" / "tools" / "rogue_agent"  # tests/tools/rogue_agent.cc
IDP_DIR = REPO_ROOT / "tests" / "idp"

# Sanitizer builds (deploy/test.sh, PGWARD_SANITIZE): a report in a pgward process's output
# fails the run even when the test itself passed (conftest.py checks after each test and
# over the whole work dir at the end). Sanitized processes exit slower (LeakSanitizer runs at
# exit), so they get longer to stop before SIGKILL, which would skip the leak check.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
SANITIZED = any(v in os.environ for v in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"))
SANITIZER_REPORTS: list[str] = []  # "<process>: <first report line>", appended as found
KEEP_WORKDIR: list[str] = []  # why the integration work dir must outlive the run (e.g. a crash)


def sanitizer_report(text: str) -> str | None:
    """The first line of a sanitizer report in text, or None."""
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKERS):
            return line.strip()
    return None


def note_sanitizer_report(what: str, text: str) -> None:
    line = sanitizer_report(text)
    if line is not None:
        SANITIZER_REPORTS.append(f"{what}: {line}")


AUDIENCE = "pgward"

# The IdP's registered clients (client_id -> groups). Secrets are generated per run.
DEFAULT_CLIENTS: dict[str, list[str]] = {
    "alice-bot": [],
    "bob-bot": [],
    "carol-bot": [],            # registered at the IdP, but no grant anywhere
    "grp-bot": ["analysts"],    # read-only through the group grant
    "dave-bot": [],             # spare principals for tests that revoke/grant at run time
    "erin-bot": [],
    "ops-bot": ["operators"],   # a group with no grant
    "opaque-bot": [],           # gets opaque access tokens (introspection tests)
    "pgward-introspector": [],  # the client an introspecting gateway authenticates as
}
# Every agent the harness starts may reach the test Postgres (and the tests' fake upstreams) on
# 127.0.0.1 and read its password from any agent-env: variable; tests add flags per agent.
DEFAULT_AGENT_FLAGS: list[str] = ["--allow-upstream", "127.0.0.1:*", "--allow-credential", "agent-env:*"]
# (kind, who, mode) applied to every gateway's "shop" connection.
DEFAULT_GRANTS: list[tuple[str, str, str]] = [
    ("principal", "alice-bot", "read-write"),
    ("principal", "bob-bot", "read-write"),
    ("group", "analysts", "read-only"),
]

SAMPLE_SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, country text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
                     total numeric(10,2), placed_at timestamptz DEFAULT now());
CREATE TABLE notes (id serial PRIMARY KEY, author text, body text);
INSERT INTO customers VALUES (1, 'Ada', 'UK'), (2, 'Grace', 'US'), (3, 'Linus', 'FI');
INSERT INTO orders (customer_id, total) VALUES (1, 42.00), (2, 17.50), (2, 99.90), (3, 5.25);
"""

_counter = itertools.count(1)


class HarnessError(RuntimeError):
    pass


def fail(message: str):
    try:
        import pytest
    except ImportError:  # pragma: no cover
        raise HarnessError(message)
    pytest.fail(message, pytrace=False)


def session_id_of(conn) -> str:
    """The pgward session id of a psycopg connection through the gateway."""
    return conn.execute("SELECT current_setting('pgward.session_id')").fetchone()[0]


def error_once_ended(conn) -> str:
    """Keeps querying on a psycopg connection (up to 5 s) until the gateway has ended its
    session; returns the error text (which carries the FATAL's message)."""
    import psycopg
    for _ in range(50):
        try:
            conn.execute("SELECT 1")
        except psycopg.OperationalError as e:
            return str(e)
        time.sleep(0.1)
    raise AssertionError("the session was still usable 5 s later")


def ended_message(conn) -> str | None:
    """One poll for wait_until: the error text once the gateway has ended the session of a
    psycopg connection, None (after 0.1 s) while it still answers."""
    import psycopg
    try:
        conn.execute("SELECT 1")
        time.sleep(0.1)
        return None
    except psycopg.OperationalError as e:
        return str(e)


def unique(prefix: str) -> str:
    """A name unique within this test run (for tables, agents, connections)."""
    return f"{prefix}{os.getpid()}_{next(_counter)}"


def missing_binaries() -> list[Path]:
    return [p for p in (GATEWAY_BIN, AGENT_BIN, CTL_BIN) if not os.access(p, os.X_OK)]


def build_hint() -> str:
    return (f"pgward binaries not found in {BUILD_DIR} (set PGWARD_BUILD_DIR to another build dir), "
            f"build them with: cmake -S {REPO_ROOT} -B {BUILD_DIR} -G Ninja && "
            f"ninja -C {BUILD_DIR} pgward-gateway pgward-agent pgwardctl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition", on_timeout: Callable[[], str] | None = None) -> Any:
    """Polls fn() until it returns something truthy and returns that; fails after timeout."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except HarnessError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            if last_exc is not None:
                extra += f"\nlast error: {last_exc!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


def conninfo(**params: Any) -> str:
    """libpq conninfo string, values quoted."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        v = str(value).replace("\\", "\\\\").replace("'", "\\'")
        parts.append(f"{key}='{v}'")
    return " ".join(parts)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


# --------------------------------------------------------------------------------------
# Processes


class Proc:
    """One child process with its log file; stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self.log_start = 0  # characters of log_path written before this process started

    def start(self) -> "Proc":
        self.log_start = len(self.log())
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd)
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap (crash simulation)."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float | None = None) -> None:
        if self.popen is None:
            return
        if timeout is None:
            timeout = 30.0 if SANITIZED else 5.0
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self.name.startswith("pgward-"):
            # Only what this run of the process wrote: restarts append to the same log.
            note_sanitizer_report(f"{self.name} (log {self.log_path})", self.log()[self.log_start:])

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def ensure_alive(self, what: str) -> None:
        if not self.alive():
            fail(f"{self.name} exited (rc={self.returncode()}) while {what}; log {self.log_path}:\n"
                 f"{tail(self.log_path)}")


# --------------------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """A throwaway PostgreSQL 15 cluster run as the postgres OS user (initdb refuses root)."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "pg"
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "socket"
        self.log_path = self.dir / "postgres.log"
        self.port = free_port()
        self.app_password = b64url(os.urandom(12))
        self.pid: int | None = None

    def _run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)],
                              capture_output=True, text=True, **kw)

    def start(self) -> None:
        self.data.mkdir(parents=True)
        self.socket_dir.mkdir(parents=True)
        shutil.chown(self.dir, "postgres", "postgres")
        for p in (self.data, self.socket_dir):
            shutil.chown(p, "postgres", "postgres")
        self.data.chmod(0o700)
        r = self._run([PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                       "--auth-host=scram-sha-256", "--no-sync"])
        if r.returncode != 0:
            fail(f"initdb failed: {r.stdout}{r.stderr}")
        key, crt = self.data / "server.key", self.data / "server.crt"
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                            "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"openssl (postgres server cert) failed: {r.stderr}")
        for p in (key, crt):
            shutil.chown(p, "postgres", "postgres")
        key.chmod(0o600)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.socket_dir}'
ssl = on
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] app=%a user=%u db=%d '
log_statement = 'all'
log_connections = on
log_disconnections = on
""")
        r = self._run([PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", "60", "start"])
        if r.returncode != 0:
            fail(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{tail(self.log_path)}")
        self.pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        self.sql(f"CREATE ROLE app LOGIN PASSWORD '{self.app_password}'")
        self.sql("CREATE DATABASE shop OWNER app")
        self.sql(SAMPLE_SCHEMA, dbname="shop", user="app")

    def stop(self) -> None:
        if self.pid is None:
            return
        r = self._run([PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "20", "stop"])
        if r.returncode != 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pid = None

    def admin_dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """Unix-socket conninfo with trust auth (any role, no password)."""
        return conninfo(host=self.socket_dir, port=self.port, dbname=dbname, user=user)

    def direct_dsn(self, dbname: str = "shop", user: str = "app", **overrides) -> str:
        """TCP + TLS conninfo straight to Postgres as the connection's real role (bypasses pgward)."""
        params = dict(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                      password=self.app_password, sslmode="require")
        params.update(overrides)
        return conninfo(**params)

    def connect(self, dbname: str = "shop", user: str = "postgres", autocommit: bool = True):
        import psycopg
        return psycopg.connect(self.admin_dsn(dbname, user), autocommit=autocommit)

    def sql(self, sql: str, dbname: str = "postgres", user: str = "postgres", params=None) -> list[tuple]:
        """Runs SQL directly (unix socket, trust) and returns the last result's rows."""
        import psycopg
        with psycopg.connect(self.admin_dsn(dbname, user), autocommit=True) as conn:
            cur = conn.execute(sql, params) if params is not None else conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def log(self, since: int = 0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def log_mark(self) -> int:
        return self.log_path.stat().st_size


# --------------------------------------------------------------------------------------
# Test IdP


class Idp:
    """tests/idp (oidc-provider) with a known RSA signing key, so tests can also mint tokens
    the gateway trusts (expired, wrong audience, arbitrary subjects, ...) with mint_token()."""

    def __init__(self, workdir: Path, clients: dict[str, list[str]] | None = None, ttl: int = 600):
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.dir = workdir / "idp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clients = {cid: {"secret": b64url(os.urandom(12)), "groups": groups}
                        for cid, groups in (clients or DEFAULT_CLIENTS).items()}
        self.ttl = ttl
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "integ-" + os.urandom(6).hex()
        self.log_path = self.dir / "idp.log"
        self.proc: Proc | None = None
        self.issuer: str | None = None
        self._cache: dict[str, tuple[float, str]] = {}

    def _jwks(self) -> dict:
        priv = self.key.private_numbers()
        pub = priv.public_numbers
        return {"keys": [{
            "kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
            "n": _int_b64(pub.n), "e": _int_b64(pub.e), "d": _int_b64(priv.d),
            "p": _int_b64(priv.p), "q": _int_b64(priv.q), "dp": _int_b64(priv.dmp1),
            "dq": _int_b64(priv.dmq1), "qi": _int_b64(priv.iqmp)}]}

    def start(self) -> None:
        if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            r = subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=IDP_DIR,
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"npm ci in {IDP_DIR} failed: {r.stderr[-2000:]}")
        clients_file = self.dir / "clients.json"
        clients_file.write_text(json.dumps([
            {"client_id": cid, "client_secret": c["secret"], "groups": c["groups"],
             "opaque": cid.startswith("opaque-")}
            for cid, c in self.clients.items()]))
        keys_file = self.dir / "jwks.json"
        keys_file.write_text(json.dumps(self._jwks()))
        keys_file.chmod(0o600)
        stdout = self.dir / "idp.stdout"
        self.proc = Proc("test IdP", ["node", IDP_DIR / "server.js", "--port", "0", "--clients", clients_file,
                                      "--ttl", str(self.ttl), "--keys", keys_file], self.log_path)
        # stdout separately: it carries the "ready <issuer>" line.
        with open(stdout, "wb") as out, open(self.log_path, "ab") as err:
            self.proc.popen = subprocess.Popen(self.proc.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

        def ready():
            self.proc.ensure_alive("starting")
            for line in stdout.read_text().splitlines():
                if line.startswith("ready "):
                    return line.split(" ", 1)[1].strip()
            return None
        self.issuer = wait_until(ready, 30, what="the test IdP to print 'ready <issuer>'",
                                 on_timeout=lambda: "\n" + tail(self.log_path))

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def fetch_token(self, client_id: str, secret: str | None = None) -> str:
        """A fresh access token from the IdP (client_credentials)."""
        if secret is None:
            if client_id not in self.clients:
                fail(f"{client_id} is not a registered IdP client (known: {sorted(self.clients)}); "
                     f"use mint_token() for arbitrary subjects")
            secret = self.clients[client_id]["secret"]
        req = urllib.request.Request(
            f"{self.issuer}/token", data=b"grant_type=client_credentials", method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
                     "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.load(resp)["access_token"]
        except urllib.error.HTTPError as exc:
            raise HarnessError(f"IdP refused a token for {client_id}: {exc.code} {exc.read()[:300]!r}")

    def revoke_token(self, client_id: str, token: str) -> None:
        """Revokes `token` at the IdP (RFC 7009), authenticated as its own client."""
        secret = self.clients[client_id]["secret"]
        body = urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode()
        req = urllib.request.Request(
            f"{self.issuer}/token/revocation", data=body, method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
                     "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.status

    def token(self, client_id: str) -> str:
        """Token for a registered client, reused while it has > 60 s left."""
        now = time.time()
        hit = self._cache.get(client_id)
        if hit and hit[0] - now > 60:
            return hit[1]
        tok = self.fetch_token(client_id)
        self._cache[client_id] = (now + self.ttl, tok)
        return tok

    def mint_token(self, sub: str, *, groups: Iterable[str] | None = None, ttl: int = 600,
                   aud: str | list | None = AUDIENCE, iss: str | None = None, iat: int | None = None,
                   exp: int | None = None, nbf: int | None = None, alg: str = "RS256",
                   typ: str | None = "at+jwt", kid: str | None = None, key=None,
                   extra_claims: dict | None = None, drop_claims: Iterable[str] = (),
                   header: dict | None = None) -> str:
        """Signs a JWT like the IdP's with the IdP's own key (so the gateway trusts it unless
        the claims say otherwise). key: another RSA private key (an untrusted signer);
        alg="none" produces an unsigned token; alg HS256 signs with the RSA public key bytes
        (the classic key-confusion attack)."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        now = int(time.time())
        claims: dict[str, Any] = {"iss": iss or self.issuer, "sub": sub, "client_id": sub,
                                  "iat": now if iat is None else iat,
                                  "exp": (now + ttl) if exp is None else exp,
                                  "jti": os.urandom(8).hex(), "scope": "pgward"}
        if aud is not None:
            claims["aud"] = aud
        if nbf is not None:
            claims["nbf"] = nbf
        if groups:
            claims["groups"] = list(groups)
        claims.update(extra_claims or {})
        for c in drop_claims:
            claims.pop(c, None)
        hdr: dict[str, Any] = {"alg": alg, "kid": kid or self.kid}
        if typ is not None:
            hdr["typ"] = typ
        hdr.update(header or {})
        signing_input = (b64url(json.dumps(hdr, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        k = key or self.key
        if alg == "none":
            sig = b""
        elif alg.startswith("HS"):
            import hashlib
            import hmac
            secret = k.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            sig = hmac.new(secret, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
        elif alg.startswith("RS"):
            sig = k.sign(signing_input, padding.PKCS1v15(), getattr(hashes, "SHA" + alg[2:])())
        elif alg.startswith("PS"):
            h = getattr(hashes, "SHA" + alg[2:])()
            sig = k.sign(signing_input, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
        else:
            raise HarnessError(f"mint_token: unsupported alg {alg}")
        return signing_input.decode() + "." + b64url(sig)

    @staticmethod
    def new_untrusted_key():
        from cryptography.hazmat.primitives.asymmetric import rsa
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------------------------------
# pgward processes


class Gateway:
    def __init__(self, workdir: Path, issuer: str, extra_flags: Sequence[str] = (), name: str = "gateway"):
        self.dir = workdir / name
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "gateway.log"
        self.issuer = issuer
        self.extra_flags = list(extra_flags)
        self.pg_port = free_port()
        self.grpc_port = free_port()
        self.proc: Proc | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "gateway.crt"

    @property
    def admin_key(self) -> Path:
        return self.data_dir / "admin.key"

    def argv(self) -> list[str]:
        return [str(GATEWAY_BIN), "--data-dir", str(self.data_dir),
                "--pg-listen", f"127.0.0.1:{self.pg_port}", "--grpc-listen", self.grpc_addr,
                "--oidc-issuer", self.issuer, "--oidc-audience", AUDIENCE, *self.extra_flags]

    def start(self, timeout: float = 20) -> "Gateway":
        """Starts (or restarts, same ports and data dir) and waits until both ports accept."""
        self.proc = Proc("pgward-gateway", self.argv(), self.log_path).start()

        def up():
            self.proc.ensure_alive("starting")
            return (port_open(self.pg_port) and port_open(self.grpc_port)
                    and self.ca_file.exists() and self.admin_key.exists())
        wait_until(up, timeout, what=f"pgward-gateway on :{self.pg_port}/:{self.grpc_port}",
                   on_timeout=lambda: "\n" + tail(self.log_path))
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def restart(self) -> "Gateway":
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return bool(self.proc and self.proc.alive())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def ctl_env(self) -> dict:
        env = dict(os.environ)
        env.update(PGWARD_GATEWAY=self.grpc_addr, PGWARD_TOKEN_FILE=str(self.admin_key),
                   PGWARD_CA_FILE=str(self.ca_file))
        return env


class Agent:
    """One pgward-agent process; name/token registered on its gateway at creation."""

    def __init__(self, env: "GatewayEnv", name: str, password_vars: dict[str, str] | None = None,
                 extra_flags: Sequence[str] = (), default_flags: bool = True):
        self.env = env
        self.name = name
        self.dir = env.gateway.dir / f"agent-{name}"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "agent.log"
        self.token_file = self.dir / "agent.token"
        self.password_vars = dict(password_vars or {})
        self.extra_flags = list(extra_flags)
        self.default_flags = list(DEFAULT_AGENT_FLAGS) if default_flags else []
        self.proc: Proc | None = None
        token = env.ctl_json("agent", "create", name)["token"]
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def process(self) -> subprocess.Popen | None:
        return self.proc.popen if self.proc else None

    def start(self, wait_online: bool = True, timeout: float = 20) -> "Agent":
        gw = self.env.gateway
        environ = dict(os.environ)
        environ.update(self.password_vars)
        self.proc = Proc(f"pgward-agent {self.name}",
                         [AGENT_BIN, "--gateway", gw.grpc_addr, "--name", self.name,
                          "--token-file", self.token_file, "--ca-file", gw.ca_file,
                          "--data-dir", self.data_dir, *self.default_flags, *self.extra_flags],
                         self.log_path, env=environ).start()
        if wait_online:
            self.wait_online(True, timeout)
        return self

    def online(self) -> bool:
        for a in self.env.ctl_json("agent", "list"):
            if a.get("name") == self.name:
                return bool(a.get("online"))
        return False

    def wait_online(self, want: bool = True, timeout: float = 20) -> None:
        def check():
            if want and self.proc:
                self.proc.ensure_alive("waiting for it to come online")
            return self.online() == want
        wait_until(check, timeout, interval=0.1,
                   what=f"agent {self.name} to be {'online' if want else 'offline'}",
                   on_timeout=lambda: f"\nagent log {self.log_path}:\n{tail(self.log_path)}")

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def restart(self, wait_online: bool = True) -> "Agent":
        self.stop()
        return self.start(wait_online)

    def alive(self) -> bool:
        return bool(self.proc and self.proc.alive())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class IsolatedAgent:
    """What the isolated_agent factory returns. Unpacks as (connection, process)."""
    name: str
    connection: str
    agent: Agent
    grants: list = field(default_factory=list)

    @property
    def process(self) -> subprocess.Popen | None:
        return self.agent.process

    @property
    def pid(self) -> int | None:
        return self.agent.pid

    def __iter__(self):
        return iter((self.connection, self.process))


# --------------------------------------------------------------------------------------
# One gateway with its agents, plus the client-side helpers tests use


class GatewayEnv:
    """A gateway (shared Postgres and IdP) with helpers. The session `stack` is one of these;
    isolated_gateway() builds more."""

    def __init__(self, workdir: Path, postgres: Postgres, idp: Idp, gateway_flags: Sequence[str] = (),
                 name: str = "gateway"):
        self.workdir = workdir
        self.postgres = postgres
        self.idp = idp
        self.gateway = Gateway(workdir, idp.issuer, gateway_flags, name=name)
        self.agents: list[Agent] = []
        self.agent: Agent | None = None
        self.connection = "shop"
        self.password_var = "SHOP_DB_PASSWORD"

    # ---- bring-up ------------------------------------------------------------------

    def start(self, agent_name: str = "db1", connection: str = "shop",
              grants: Sequence[tuple[str, str, str]] = tuple(DEFAULT_GRANTS)) -> "GatewayEnv":
        self.gateway.start()
        self.agent = self.add_agent(agent_name)
        self.connection = connection
        self.create_connection(connection, agent_name)
        for kind, who, mode in grants:
            self.grant(who, connection, mode, group=(kind == "group"))
        return self

    def add_agent(self, name: str, start: bool = True, extra_flags: Sequence[str] = (),
                  default_flags: bool = True) -> Agent:
        """default_flags=False starts the agent without DEFAULT_AGENT_FLAGS (its allow-lists)."""
        agent = Agent(self, name, {self.password_var: self.postgres.app_password}, extra_flags, default_flags)
        self.agents.append(agent)
        if start:
            agent.start()
        return agent

    def create_connection(self, name: str, agent: str, *, database: str = "shop", user: str = "app",
                          port: int | None = None, password_ref: str | None = None,
                          sslmode: str = "require") -> None:
        self.ctl("connection", "create", name, "--agent", agent, "--host", "127.0.0.1",
                 "--port", str(port or self.postgres.port), "--database", database, "--user", user,
                 "--password-ref", password_ref or f"agent-env:{self.password_var}",
                 "--sslmode", sslmode, check=True)

    def grant(self, who: str, connection: str | None = None, mode: str = "read-write", *,
              group: bool = False, extra: Sequence[str] = ()) -> dict | list:
        out = self.ctl_json("grant", "create", "--group" if group else "--principal", who,
                            "--connection", connection or self.connection, "--mode", mode, *extra)
        return out

    def stop(self) -> None:
        for a in reversed(self.agents):
            a.stop()
        self.gateway.stop()

    # ---- properties ------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.idp.issuer

    @property
    def pg_port(self) -> int:
        """The gateway's Postgres endpoint port (what callers connect to)."""
        return self.gateway.pg_port

    @property
    def grpc_port(self) -> int:
        return self.gateway.grpc_port

    gateway_host = "127.0.0.1"  # where the gateway's endpoints listen

    @property
    def gateway_pg_port(self) -> int:
        """Alias of pg_port."""
        return self.gateway.pg_port

    @property
    def pids(self) -> dict[str, int | None]:
        d = {"postgres": self.postgres.pid, "idp": self.idp.proc.pid if self.idp.proc else None,
             "gateway": self.gateway.pid}
        for a in self.agents:
            d[f"agent:{a.name}"] = a.pid
        return d

    @property
    def paths(self) -> dict[str, Path]:
        d = {"workdir": self.workdir, "pg_data": self.postgres.data, "pg_log": self.postgres.log_path,
             "pg_socket": self.postgres.socket_dir, "gateway_data": self.gateway.data_dir,
             "gateway_log": self.gateway.log_path, "ca_file": self.gateway.ca_file,
             "admin_key": self.gateway.admin_key, "idp_log": self.idp.log_path}
        for a in self.agents:
            d[f"agent_log:{a.name}"] = a.log_path
        return d

    # ---- tokens ----------------------------------------------------------------------

    def token(self, client: str) -> str:
        """A fresh access token for a registered IdP client (real client_credentials grant)."""
        return self.idp.fetch_token(client)

    def mint_token(self, sub: str, **kw) -> str:
        """A JWT signed with the IdP's key for any subject/claims; see Idp.mint_token."""
        return self.idp.mint_token(sub, **kw)

    # ---- callers ---------------------------------------------------------------------

    def dsn(self, client: str | None = None, *, token: str | None = None, **overrides) -> str:
        """libpq conninfo for the gateway as `client` (password = a fresh token).
        overrides replace/add keys (dbname, sslmode, application_name, password=None drops it, ...)."""
        params: dict[str, Any] = dict(host="127.0.0.1", port=self.pg_port, dbname=self.connection,
                                      user=client or "anyone", sslmode="require",
                                      connect_timeout=10)
        if token is None and client is not None and "password" not in overrides:
            token = self.token(client)
        if token is not None:
            params["password"] = token
        params.update(overrides)
        return conninfo(**params)

    def connect(self, client: str | None = None, *, token: str | None = None, autocommit: bool = True,
                **overrides):
        """psycopg 3 connection through the gateway (autocommit by default)."""
        import psycopg
        return psycopg.connect(self.dsn(client, token=token, **overrides), autocommit=autocommit)

    def psql(self, client: str | None, sql: str | None = None, *args: str, token: str | None = None,
             input: str | None = None, on_error_stop: bool = True, timeout: float = 60,
             dsn_overrides: dict | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        """Runs real psql (-X -A -t -q) through the gateway. sql goes in one -c (one simple Query
        message, so "a; b" is a multi-statement query). Never raises on psql failure: check
        .returncode / .stderr."""
        argv = ["psql", "-X", "-A", "-t", "-q", "-v", f"ON_ERROR_STOP={1 if on_error_stop else 0}"]
        if sql is not None:
            argv += ["-c", sql]
        argv += list(args)
        argv.append(self.dsn(client, token=token, **(dsn_overrides or {})))
        e = dict(os.environ)
        e.pop("PGPASSWORD", None)
        e.update(env or {})
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=e)

    # ---- admin -----------------------------------------------------------------------

    def ctl(self, *args: str, check: bool = False, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Runs pgwardctl against this gateway (admin.key). Returns the CompletedProcess."""
        r = subprocess.run([str(CTL_BIN), *map(str, args)], capture_output=True, text=True,
                           env=self.gateway.ctl_env(), timeout=timeout, input=input)
        note_sanitizer_report(f"pgwardctl {shlex.join(map(str, args))}", r.stderr)
        if check and r.returncode != 0:
            raise HarnessError(f"pgwardctl {shlex.join(map(str, args))} failed rc={r.returncode}: "
                               f"{r.stderr.strip()} {r.stdout.strip()}")
        return r

    def ctl_json(self, *args: str) -> Any:
        """pgwardctl ... --json, parsed; raises HarnessError on a non-zero exit."""
        r = self.ctl(*args, "--json", check=True)
        return json.loads(r.stdout)

    def audit(self, *, principal: str | None = None, connection: str | None = None,
              since: str | None = None, limit: int = 10000, session: str | None = None) -> list[dict]:
        """Parsed `pgwardctl audit list --json` (newest first, as the gateway returns it)."""
        args = ["audit", "list", "--limit", str(limit)]
        for flag, v in (("--principal", principal), ("--connection", connection),
                        ("--since", since), ("--session", session)):
            if v is not None:
                args += [flag, v]
        return self.ctl_json(*args)

    def wait_audit(self, predicate: Callable[[list[dict]], Any], timeout: float = 10, **filters) -> Any:
        """Polls audit(**filters) until predicate(rows) is truthy; returns that value
        (return the rows themselves from the predicate to get them). Audit rows arrive
        asynchronously (agent -> gateway with acks)."""
        last: list = []

        def check():
            nonlocal last
            last = self.audit(**filters)
            return predicate(last)
        return wait_until(check, timeout, interval=0.1, what=f"audit rows matching {filters or ''}",
                          on_timeout=lambda: "; last rows:\n" + json.dumps(last[:30], indent=1))

    def wait_audit_rows(self, match: Callable[[dict], bool], count: int = 1, timeout: float = 10,
                        **filters) -> list[dict]:
        """Waits until at least `count` audit rows satisfy match(row); returns them (oldest first)."""
        def pred(rows):
            hits = [r for r in rows if match(r)]
            return sorted(hits, key=lambda r: r["id"]) if len(hits) >= count else None
        return self.wait_audit(pred, timeout, **filters)

    def sessions(self, *, principal: str | None = None, connection: str | None = None,
                 active: bool = False, limit: int = 10000) -> list[dict]:
        """Parsed `pgwardctl session list --json`."""
        args = ["session", "list", "--limit", str(limit)]
        if active:
            args.append("--active")
        for flag, v in (("--principal", principal), ("--connection", connection)):
            if v is not None:
                args += [flag, v]
        return self.ctl_json(*args)

    def wait_sessions(self, predicate: Callable[[list[dict]], Any], timeout: float = 10, **filters) -> Any:
        last: list = []

        def check():
            nonlocal last
            last = self.sessions(**filters)
            return predicate(last)
        return wait_until(check, timeout, interval=0.1, what="sessions matching",
                          on_timeout=lambda: "; last sessions:\n" + json.dumps(last[:30], indent=1))

    def rogue(self, agent: str, token_file: Path, *args: str, timeout: float = 60) -> dict:
        """Runs tests/tools/rogue_agent against this gateway as `agent` with the token in
        `token_file`; returns its one JSON answer (see rogue_agent.cc for commands)."""
        if not os.access(ROGUE_BIN, os.X_OK):
            fail(f"{ROGUE_BIN} is missing: ninja -C {BUILD_DIR} rogue_agent")
        r = subprocess.run([str(ROGUE_BIN), "--gateway", self.gateway.grpc_addr, "--ca-file", str(self.gateway.ca_file),
                            "--name", agent, "--token-file", str(token_file), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout)
        note_sanitizer_report(f"rogue_agent {shlex.join(map(str, args))}", r.stderr)
        lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode != 0 or not lines:
            raise HarnessError(f"rogue_agent {shlex.join(map(str, args))} failed rc={r.returncode}: "
                               f"{r.stderr.strip()[-500:]} {r.stdout.strip()[-500:]}")
        return json.loads(lines[-1])

    # ---- logs ------------------------------------------------------------------------

    def pg_log(self, since: int = 0) -> str:
        """Postgres log text (from byte offset `since`, see pg_log_mark())."""
        return self.postgres.log(since)

    def pg_log_mark(self) -> int:
        return self.postgres.log_mark()

    def gateway_log(self) -> str:
        return self.gateway.log()

    def agent_log(self, name: str | None = None) -> str:
        for a in self.agents:
            if name is None or a.name == name:
                return a.log()
        return ""

    # ---- direct Postgres (bypasses pgward) -------------------------------------------

    def pg_sql(self, sql: str, dbname: str = "shop", user: str = "postgres", params=None) -> list[tuple]:
        return self.postgres.sql(sql, dbname=dbname, user=user, params=params)

    def direct_dsn(self, **overrides) -> str:
        return self.postgres.direct_dsn(**overrides)


def make_workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="pgward-integ-"))
    d.chmod(0o755)  # postgres (runuser) must traverse it
    return d

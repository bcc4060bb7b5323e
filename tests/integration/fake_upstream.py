"""A scripted stand-in for PostgreSQL, for tests of how pgward-agent treats a hostile or broken
upstream (what a real Postgres never does: ask for a cleartext password over plaintext, demand
10 million SCRAM iterations, answer a SELECT with CopyInResponse or garbage, never close a
cancel connection).

    with FakeUpstream(script) as fake:        # listens on 127.0.0.1:fake.port
        ...                                   # register it as a connection (sslmode disable)
    fake.connections                          # one FakeConnection per accepted connection

`script(conn)` runs in its own thread per accepted connection. It reads what the agent sends
with conn.read_startup() / conn.read_message() and answers with the builders below
(conn.login_ok(), conn.send(...)). Everything the agent sent is kept in conn.received, so a
test can assert that, say, no PasswordMessage ever arrived. The server and every connection
are closed by stop() (or leaving the `with`); scripts that want to hold a connection open
call conn.hold(), which returns once the server stops.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import threading
from typing import Callable, Optional

SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102
GSSENC_REQUEST_CODE = 80877104

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def authentication(code: int, data: bytes = b"") -> bytes:
    return message(b"R", struct.pack("!I", code) + data)


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, key: int) -> bytes:
    return message(b"K", struct.pack("!iI", pid, key))


def ready_for_query(status: str = "I") -> bytes:
    return message(b"Z", status.encode())


def error_response(severity: str, sqlstate: str, text: str) -> bytes:
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(sqlstate) + b"M" + cstr(text) + b"\0"
    return message(b"E", body)


def row_description(*columns: str) -> bytes:
    body = struct.pack("!H", len(columns))
    for name in columns:  # text columns of type int4 (oid 23)
        body += cstr(name) + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0)
    return message(b"T", body)


def data_row(*values: str) -> bytes:
    body = struct.pack("!H", len(values))
    for v in values:
        raw = v.encode()
        body += struct.pack("!i", len(raw)) + raw
    return message(b"D", body)


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def copy_in_response(columns: int = 1) -> bytes:
    return message(b"G", struct.pack("!bH", 0, columns) + struct.pack("!h", 0) * columns)


# What a real Postgres 15 reports at login (the GUC_REPORT settings).
def default_parameters(application_name: str = "", user: str = "app") -> dict[str, str]:
    return {
        "application_name": application_name, "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
        "default_transaction_read_only": "off", "in_hot_standby": "off", "integer_datetimes": "on",
        "IntervalStyle": "postgres", "is_superuser": "off", "server_encoding": "UTF8",
        "server_version": "15.0 (pgward fake upstream)", "session_authorization": user,
        "standard_conforming_strings": "on", "TimeZone": "UTC",
    }


class FakeConnection:
    """One accepted connection: read what the agent sends, send scripted answers."""

    def __init__(self, sock: socket.socket, stopping: threading.Event):
        self.sock = sock
        self.stopping = stopping
        self.kind: Optional[str] = None            # "startup", "cancel" (after read_startup)
        self.startup: dict[str, str] = {}         # StartupMessage parameters
        self.cancel: Optional[tuple[int, int]] = None  # CancelRequest (pid, key)
        self.received: list[tuple[str, bytes]] = []    # every typed message read
        self.closed_by_peer = False
        self._buffer = b""

    # ---- reading ------------------------------------------------------------------

    def _read_exact(self, n: int, timeout: Optional[float]) -> bytes:
        self.sock.settimeout(timeout)
        while len(self._buffer) < n:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed_by_peer = True
                raise EOFError("the agent closed the connection")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def read_startup(self, timeout: float = 10) -> str:
        """Reads the untyped first packet; answers an SSLRequest with 'N' and reads again.
        Returns "startup" or "cancel"."""
        while True:
            (length,) = struct.unpack("!I", self._read_exact(4, timeout))
            packet = self._read_exact(length - 4, timeout)
            (code,) = struct.unpack("!I", packet[:4])
            if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
                self.sock.sendall(b"N")
                continue
            if code == CANCEL_REQUEST_CODE:
                self.kind = "cancel"
                self.cancel = struct.unpack("!iI", packet[4:12])
                return self.kind
            parts = packet[4:].split(b"\0")
            self.startup = {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 2, 2)}
            self.kind = "startup"
            return self.kind

    def read_message(self, timeout: Optional[float] = 10) -> tuple[str, bytes]:
        """One typed frontend message (type letter, body); EOFError when the agent closed."""
        header = self._read_exact(5, timeout)
        kind = chr(header[0])
        (length,) = struct.unpack("!I", header[1:5])
        body = self._read_exact(length - 4, timeout)
        self.received.append((kind, body))
        return kind, body

    def read_query(self, timeout: Optional[float] = 10) -> str:
        """Reads messages until a simple Query arrives; returns its SQL."""
        while True:
            kind, body = self.read_message(timeout)
            if kind == "Q":
                return body.rstrip(b"\0").decode()
            if kind == "X":
                raise EOFError("the agent sent Terminate")

    def wait_closed(self, timeout: float = 10) -> bool:
        """Reads (and records) until the agent closes the connection; False on timeout."""
        try:
            while True:
                self.read_message(timeout)
        except EOFError:
            return True
        except socket.timeout:
            return False

    # ---- writing ------------------------------------------------------------------

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def login_ok(self, parameters: Optional[dict[str, str]] = None, pid: int = 4242, key: int = 77) -> None:
        """AuthenticationOk, ParameterStatus for each parameter, BackendKeyData, ReadyForQuery."""
        if parameters is None:
            parameters = default_parameters(self.startup.get("application_name", ""),
                                            self.startup.get("user", "app"))
        self.send(authentication(AUTH_OK), *(parameter_status(k, v) for k, v in parameters.items()),
                  backend_key_data(pid, key), ready_for_query("I"))

    def scram_login(self, password: str, iterations: int, salt: bytes = b"pgward-fake-salt") -> bool:
        """Server side of SCRAM-SHA-256 (RFC 5802/7677) with the given iteration count.
        Returns True when the client proved the password; then sends SASLFinal (not AuthOk)."""
        self.send(authentication(AUTH_SASL, cstr("SCRAM-SHA-256") + b"\0"))
        kind, body = self.read_message()
        assert kind == "p", f"expected SASLInitialResponse, got {kind!r}"
        mechanism, rest = body.split(b"\0", 1)
        assert mechanism == b"SCRAM-SHA-256", mechanism
        (length,) = struct.unpack("!i", rest[:4])
        client_first = rest[4:4 + length].decode()
        client_first_bare = client_first.split(",", 2)[2]  # after the gs2 header "n,,"
        client_nonce = dict(a.split("=", 1) for a in client_first_bare.split(","))["r"]
        nonce = client_nonce + base64.b64encode(os.urandom(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        self.send(authentication(AUTH_SASL_CONTINUE, server_first.encode()))
        kind, body = self.read_message()
        assert kind == "p", f"expected SASLResponse, got {kind!r}"
        client_final = body.decode()
        without_proof, proof_attr = client_final.rsplit(",", 1)
        proof = base64.b64decode(proof_attr[2:])
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        if bytes(a ^ b for a, b in zip(client_key, signature)) != proof:
            self.send(error_response("FATAL", "28P01", "password authentication failed (fake upstream)"))
            return False
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        verifier = hmac.new(server_key, auth_message, "sha256").digest()
        self.send(authentication(AUTH_SASL_FINAL, b"v=" + base64.b64encode(verifier)))
        return True

    def hold(self) -> None:
        """Keeps the connection open (reading and discarding) until the server stops."""
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                if not self.sock.recv(65536):
                    self.closed_by_peer = True
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        self.stopping.wait()


class FakeUpstream:
    """Listens on 127.0.0.1 (free port); runs `script(conn)` in a thread per connection."""

    def __init__(self, script: Callable[[FakeConnection], None]):
        self.script = script
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections: list[FakeConnection] = []
        self.errors: list[str] = []  # exceptions raised by scripts (other than the agent closing)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="fake-upstream", daemon=True)

    def __enter__(self) -> "FakeUpstream":
        self._acceptor.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn = FakeConnection(sock, self._stopping)
            with self._lock:
                self.connections.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: FakeConnection) -> None:
        try:
            self.script(conn)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            pass
        except Exception as exc:  # noqa: BLE001 - reported to the test through .errors
            if not self._stopping.is_set():
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if not self._stopping.is_set():
                # A finished script leaves the connection open until the agent closes it (like
                # a server waiting for its client), so the agent decides when a session ends.
                try:
                    conn.hold()
                except OSError:
                    pass
            try:
                conn.sock.close()
            except OSError:
                pass

    def of_kind(self, kind: str) -> list[FakeConnection]:
        with self._lock:
            return [c for c in self.connections if c.kind == kind]

    def stop(self) -> None:
        self._stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._acceptor.join(timeout=5)
        for t in list(self._threads):
            t.join(timeout=5)

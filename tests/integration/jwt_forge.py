"""Helpers for refusal and resilience tests: an RSA issuer we control (openssl CLI only, no
`cryptography` module), hand-made JWTs (good and deliberately bad), and a tiny raw Postgres
wire client for startup-phase abuse (garbage, oversized packets, stalls, CancelRequest).

Everything here is hermetic: keys live in a caller-supplied temp directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def _int_to_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


class RsaIssuer:
    """An OIDC issuer we control: an RSA-2048 key made with `openssl`, its public JWK written
    to `jwks.json` (for `--oidc-jwks-file`), and RS256 signing with `openssl dgst`."""

    def __init__(self, workdir: str, issuer: str, kid: str = "forge-1", audience: str = "pgward"):
        self.workdir = workdir
        self.issuer = issuer
        self.kid = kid
        self.audience = audience
        os.makedirs(workdir, exist_ok=True)
        self.key_path = os.path.join(workdir, f"{kid}.pem")
        subprocess.run(["openssl", "genrsa", "-out", self.key_path, "2048"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        modulus = subprocess.run(["openssl", "rsa", "-in", self.key_path, "-noout", "-modulus"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        m = re.fullmatch(r"Modulus=([0-9A-Fa-f]+)", modulus)
        assert m, f"unexpected openssl -modulus output: {modulus!r}"
        n = int(m.group(1), 16)
        text = subprocess.run(["openssl", "rsa", "-in", self.key_path, "-noout", "-text"], check=True,
                              capture_output=True, text=True).stdout
        e_match = re.search(r"publicExponent:\s*(\d+)", text)
        assert e_match, "openssl rsa -text printed no publicExponent"
        e = int(e_match.group(1))
        self.jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": b64url(_int_to_bytes(n)), "e": b64url(_int_to_bytes(e))}
        self.jwks_path = os.path.join(workdir, "jwks.json")
        with open(self.jwks_path, "w") as f:
            json.dump({"keys": [self.jwk]}, f)

    def sign(self, signing_input: bytes) -> bytes:
        out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key_path], input=signing_input,
                             check=True, capture_output=True)
        return out.stdout

    def claims(self, sub: str = "forge-bot", **overrides) -> dict:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": sub, "client_id": sub,
                  "iat": now, "exp": now + 600, "jti": f"jti-{now}-{sub}"}
        for k, v in overrides.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return claims

    def token(self, claims: Optional[dict] = None, header: Optional[dict] = None, **claim_overrides) -> str:
        """An RS256 JWS signed with our key. `header` replaces the default header wholesale."""
        if claims is None:
            claims = self.claims(**claim_overrides)
        if header is None:
            header = {"alg": "RS256", "typ": "at+jwt", "kid": self.kid}
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode()
        return signing_input.decode() + "." + b64url(self.sign(signing_input))


def alg_none_token(claims: dict, kid: Optional[str] = None) -> str:
    header = {"alg": "none", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    return f"{b64url_json(header)}.{b64url_json(claims)}."


def hs256_token(claims: dict, secret: bytes, kid: Optional[str] = None) -> str:
    """HS256 with `secret` (classic key-confusion attempt: secret = the RSA public key bytes)."""
    import hashlib
    import hmac
    header = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode()
    return signing_input.decode() + "." + b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())


def tamper_signature(token: str) -> str:
    """Flip one character in the MIDDLE of the signature (the last base64url character may carry
    padding bits that a decoder ignores, so changing it could leave the bytes intact)."""
    head, payload, sig = token.split(".")
    i = len(sig) // 2
    replacement = "A" if sig[i] != "A" else "B"
    return f"{head}.{payload}.{sig[:i]}{replacement}{sig[i + 1:]}"


def tamper_payload(token: str, **changes) -> str:
    """Re-encode the payload with changed claims but keep the original signature."""
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{head}.{b64url_json(claims)}.{sig}"


# ---------------------------------------------------------------------------------------------
# Raw Postgres wire helpers (startup phase only).

PROTOCOL_3 = 196608
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102


def startup_packet(params: dict, protocol: int = PROTOCOL_3) -> bytes:
    body = struct.pack("!I", protocol)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def cancel_request(pid: int, key: int) -> bytes:
    return struct.pack("!IIiI", 16, CANCEL_REQUEST_CODE, pid, key)


def password_message(password: str) -> bytes:
    body = password.encode() + b"\0"
    return b"p" + struct.pack("!I", len(body) + 4) + body


@dataclass
class ServerMessage:
    kind: str
    body: bytes
    fields: dict = field(default_factory=dict)  # ErrorResponse/NoticeResponse fields by code letter

    @property
    def sqlstate(self) -> Optional[str]:
        return self.fields.get("C")

    @property
    def severity(self) -> Optional[str]:
        return self.fields.get("V") or self.fields.get("S")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


def parse_messages(data: bytes) -> tuple[list[ServerMessage], bytes]:
    """Split complete backend messages off `data`; returns (messages, leftover bytes)."""
    out = []
    while len(data) >= 5:
        kind = chr(data[0])
        (length,) = struct.unpack("!I", data[1:5])
        if length < 4 or len(data) < 1 + length:
            break
        body = data[5:1 + length]
        msg = ServerMessage(kind, body)
        if kind in ("E", "N"):
            for part in body.split(b"\0"):
                if part:
                    msg.fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
        out.append(msg)
        data = data[1 + length:]
    return out, data


def read_until_closed(sock, timeout: float) -> tuple[bytes, bool, float]:
    """Read everything until EOF/reset or `timeout`. Returns (data, closed, seconds_elapsed)."""
    start = time.monotonic()
    data = b""
    deadline = start + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False, time.monotonic() - start
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            ready = True
        else:
            ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, ssl.SSLEOFError):
            return data, True, time.monotonic() - start
        except socket.timeout:
            continue
        if not chunk:
            return data, True, time.monotonic() - start
        data += chunk


def raw_connect(host: str, port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tls_connect(host: str, port: int, timeout: float = 5.0) -> ssl.SSLSocket:
    """SSLRequest + TLS handshake without certificate verification (sslmode=require semantics)."""
    s = raw_connect(host, port, timeout)
    s.sendall(ssl_request())
    answer = s.recv(1)
    assert answer == b"S", f"gateway answered {answer!r} to SSLRequest, expected b'S'"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s, server_hostname=host)


def errors_in(data: bytes) -> list[ServerMessage]:
    msgs, _ = parse_messages(data)
    return [m for m in msgs if m.kind == "E"]


@dataclass
class LoginResult:
    messages: list           # every complete backend message received
    closed: bool             # the server closed the connection
    asked_for_password: bool  # AuthenticationCleartextPassword was received
    authenticated: bool      # AuthenticationOk was received

    @property
    def error(self) -> Optional[ServerMessage]:
        errs = [m for m in self.messages if m.kind == "E"]
        return errs[0] if errs else None


def raw_login(host: str, port: int, dbname: str, password: str, user: str = "raw-client",
              tls: bool = True, timeout: float = 10.0, close_after_ok: bool = True) -> LoginResult:
    """Log in through the gateway with our own wire client, so the exact SQLSTATE of a FATAL
    login error is visible (libpq reports connection-phase errors as text only)."""
    sock = tls_connect(host, port, timeout) if tls else raw_connect(host, port, timeout)
    try:
        sock.sendall(startup_packet({"user": user, "database": dbname, "application_name": "pgward-refusal-test"}))
        data = b""
        messages: list = []
        asked = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                msgs, data = parse_messages(data)
                messages += msgs
                return LoginResult(messages, True, asked, any(_is_auth_ok(m) for m in messages))
            if not chunk:
                msgs, data = parse_messages(data)
                messages += msgs
                return LoginResult(messages, True, asked, any(_is_auth_ok(m) for m in messages))
            data += chunk
            msgs, data = parse_messages(data)
            for m in msgs:
                messages.append(m)
                if m.kind == "R" and struct.unpack("!I", m.body[:4])[0] == 3 and not asked:
                    asked = True
                    try:
                        sock.sendall(password_message(password))
                    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, socket.timeout):
                        pass  # the server may refuse before reading it all; keep reading its answer
                if m.kind == "Z" and close_after_ok:
                    sock.sendall(b"X\0\0\0\4")
                    return LoginResult(messages, False, asked, True)
        return LoginResult(messages, False, asked, any(_is_auth_ok(m) for m in messages))
    finally:
        try:
            sock.close()
        except OSError:
            pass


def _is_auth_ok(m: ServerMessage) -> bool:
    return m.kind == "R" and len(m.body) >= 4 and struct.unpack("!I", m.body[:4])[0] == 0


def raw_session(host: str, port: int, dbname: str, password: str, user: str = "raw-client",
                rcvbuf: Optional[int] = None, timeout: float = 10.0):
    """Logs in over TLS and returns (ssl socket, backend messages) once ReadyForQuery arrives.
    rcvbuf shrinks the client's receive buffer (set before connecting) for slow-reader tests."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    s.sendall(ssl_request())
    assert s.recv(1) == b"S", "gateway refused SSLRequest"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(s, server_hostname=host)
    sock.sendall(startup_packet({"user": user, "database": dbname, "application_name": "pgward-raw-session"}))
    data = b""
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed during login: {[(m.kind, m.fields) for m in messages]}")
        data += chunk
        msgs, data = parse_messages(data)
        for m in msgs:
            messages.append(m)
            if m.kind == "R" and struct.unpack("!I", m.body[:4])[0] == 3:
                sock.sendall(password_message(password))
            elif m.kind == "E":
                raise ConnectionError(f"login refused: {m.fields}")
            elif m.kind == "Z":
                return sock, messages
    raise TimeoutError("no ReadyForQuery")


def query_message(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body

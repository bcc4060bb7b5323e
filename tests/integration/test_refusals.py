"""Refusals (ARCHITECTURE.md sections 2 and 4): every bad login is refused with the contract's
SQLSTATE, says "authentication failed" for token problems, and never echoes the token.

Two kinds of gateway are used:
- the session `stack` (real IdP, agent db1, connection shop) for grant / connection-name refusals;
- `forge_gateway`: a second gateway of our own (own data dir, ports picked by the kernel) trusting an
  issuer whose RSA key we hold (`--oidc-jwks-file`), so we can mint expired, not-yet-valid,
  wrong-audience, tampered, alg=none and HS256 tokens. Token checks come before any agent is
  involved, so this gateway needs none: a token that passes gets FATAL 3D000 for the connection
  name (it has no connections) -- that is the positive control for each negative case.

libpq/psycopg report connection-phase errors as text only (e.sqlstate is None), so the exact
SQLSTATE is read with our own wire client (`jwt_forge.raw_login`); psycopg is used as well to show
what a real client prints.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import psycopg
import pytest

import jwt_forge as jf

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("PGWARD_BUILD_DIR", os.path.join(REPO_ROOT, "build"))
GATEWAY_BIN = os.path.join(BUILD_DIR, "gateway", "pgward-gateway")
FORGE_ISSUER = "https://issuer.forge.test"
AUTH_FAILED = "authentication failed"


class ForgeGateway:
    """A pgward-gateway trusting only FORGE_ISSUER through a static JWKS file."""

    def __init__(self, workdir: str, jwks_path: str, extra_flags=()):
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "gateway.log")
        self._log = open(self.log_path, "wb")
        # Port 0: the kernel picks free ports; the gateway prints the ones it got.
        self.proc = subprocess.Popen(
            [GATEWAY_BIN, "--data-dir", self.data_dir, "--pg-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
             "--oidc-issuer", FORGE_ISSUER, "--oidc-audience", "pgward", "--oidc-jwks-file", jwks_path,
             *extra_flags],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        self.port = None
        while time.monotonic() < deadline:
            m = re.search(r"listening: postgres :(\d+), grpc :(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"forge gateway did not start; log:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def login(self, token: str, dbname: str = "shop", tls: bool = True) -> jf.LoginResult:
        return jf.raw_login("127.0.0.1", self.port, dbname, token, tls=tls)

    def psycopg_error(self, token: str, dbname: str = "shop", sslmode: str = "require") -> str:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(host="127.0.0.1", port=self.port, dbname=dbname, user="someone", password=token,
                            sslmode=sslmode, connect_timeout=10).close()
        return str(info.value)


@pytest.fixture(scope="module")
def forge_issuer(tmp_path_factory):
    return jf.RsaIssuer(str(tmp_path_factory.mktemp("forge-issuer")), FORGE_ISSUER)


@pytest.fixture(scope="module")
def forge_gateway(tmp_path_factory, forge_issuer):
    gw = ForgeGateway(str(tmp_path_factory.mktemp("forge-gw")), forge_issuer.jwks_path)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def insecure_gateway(tmp_path_factory, forge_issuer):
    gw = ForgeGateway(str(tmp_path_factory.mktemp("forge-gw-insecure")), forge_issuer.jwks_path,
                      extra_flags=["--allow-insecure-loopback"])
    yield gw
    gw.stop()


def assert_refused(result: jf.LoginResult, sqlstate: str, what: str, contains: str | None = None):
    err = result.error
    assert err is not None, f"{what}: expected FATAL {sqlstate}, got no ErrorResponse; messages: " \
                            f"{[(m.kind, m.fields) for m in result.messages]}"
    assert err.severity == "FATAL", f"{what}: severity {err.severity!r}, expected FATAL ({err.fields})"
    assert err.sqlstate == sqlstate, f"{what}: SQLSTATE {err.sqlstate!r}, expected {sqlstate} ({err.message!r})"
    assert not result.authenticated, f"{what}: AuthenticationOk was sent before the refusal"
    if contains:
        assert contains.lower() in err.message.lower(), f"{what}: message {err.message!r} lacks {contains!r}"


def assert_no_token_echo(token: str, *texts: str):
    """Neither the whole token nor its payload/signature part may appear in what we were told."""
    parts = [p for p in token.split(".") if len(p) >= 16]
    for text in texts:
        assert token not in text, "the token was echoed back"
        for part in parts:
            assert part[:32] not in text, f"a token segment ({part[:32]}...) was echoed: {text[:300]!r}"


# ---------------------------------------------------------------------------------------------
# Refusals on the real stack (real IdP tokens).

def _stack_login(stack, client: str, dbname: str) -> jf.LoginResult:
    return jf.raw_login(stack.gateway_host, stack.gateway_pg_port, dbname, stack.token(client))


def test_no_grant_is_refused_with_28000(stack):
    result = _stack_login(stack, "carol-bot", "shop")
    assert_refused(result, "28000", "carol-bot without a grant")
    # A real client sees a FATAL too and no session is opened.
    with pytest.raises(psycopg.OperationalError) as info:
        stack.connect("carol-bot")
    assert "FATAL" in str(info.value)
    assert_no_token_echo(stack.token("carol-bot"), str(info.value), result.error.message)
    # Positive control: the same path with a granted client reaches a live session.
    ok = _stack_login(stack, "alice-bot", "shop")
    assert ok.authenticated and ok.error is None, f"alice-bot should log in: {[(m.kind, m.fields) for m in ok.messages]}"


def test_unknown_connection_is_refused_with_3D000(stack):
    result = _stack_login(stack, "alice-bot", "no_such_connection")
    assert_refused(result, "3D000", "unknown connection name")
    assert "no_such_connection" in result.error.message, "the message should name the connection asked for"


def _stack_bad_tokens(stack) -> dict:
    now = _now()
    good = stack.mint_token("alice-bot")
    return {
        "expired": stack.mint_token("alice-bot", iat=now - 720, exp=now - 120),
        "not_yet_valid": stack.mint_token("alice-bot", nbf=now + 120),
        "wrong_audience": stack.mint_token("alice-bot", aud="not-pgward"),
        "no_audience": stack.mint_token("alice-bot", aud=None),
        "untrusted_issuer": stack.mint_token("alice-bot", iss="http://127.0.0.1:1/evil"),
        "foreign_signer_same_kid": stack.mint_token("alice-bot", key=stack.idp.new_untrusted_key()),
        "tampered_signature": jf.tamper_signature(good),
        "tampered_subject": jf.tamper_payload(good, sub="bob-bot", client_id="bob-bot"),
        "alg_none": stack.mint_token("alice-bot", alg="none"),
        "hs256_key_confusion": stack.mint_token("alice-bot", alg="HS256"),
        "unknown_kid": stack.mint_token("alice-bot", kid="rotated-away"),
    }


STACK_BAD_CASES = ["expired", "not_yet_valid", "wrong_audience", "no_audience", "untrusted_issuer",
                   "foreign_signer_same_kid", "tampered_signature", "tampered_subject", "alg_none",
                   "hs256_key_confusion", "unknown_kid"]


@pytest.mark.parametrize("case", STACK_BAD_CASES)
def test_bad_token_refused_by_stack_gateway(stack, case):
    """Same refusals through the real discovery + jwks_uri path of the stack's IdP; alice-bot HAS a
    grant on shop, so only the token can be the reason."""
    token = _stack_bad_tokens(stack)[case]
    result = jf.raw_login(stack.gateway_host, stack.gateway_pg_port, "shop", token)
    assert_refused(result, "28000", case, contains=AUTH_FAILED)
    r = stack.psql("alice-bot", "select 1", token=token)
    assert r.returncode != 0 and AUTH_FAILED in r.stderr, f"{case}: psql said {r.returncode} {r.stderr!r}"
    assert_no_token_echo(token, result.error.message, r.stderr, stack.gateway_log())


def test_minted_token_positive_control_on_stack(stack):
    """A token minted with the IdP's key and sane claims opens a real session (so the refusals
    above are about the defect each one carries)."""
    token = stack.mint_token("alice-bot")
    with stack.connect("alice-bot", token=token) as conn:
        assert conn.execute("select current_setting('pgward.principal')").fetchone()[0] == "alice-bot"
    r = stack.psql("alice-bot", "select 41 + 1", token=token)
    assert r.returncode == 0 and r.stdout.strip() == "42", (r.returncode, r.stderr)


# ---------------------------------------------------------------------------------------------
# Token refusals against the forge gateway.

def _now() -> int:
    return int(time.time())


def _bad_tokens(iss: jf.RsaIssuer) -> dict:
    now = _now()
    good = iss.token()
    public_pem = subprocess.run(["openssl", "rsa", "-in", iss.key_path, "-pubout"], check=True,
                                capture_output=True).stdout
    return {
        "expired": iss.token(exp=now - 120, iat=now - 720),
        "not_yet_valid": iss.token(nbf=now + 120),
        "untrusted_issuer": iss.token(iss="https://evil.example"),
        "issuer_trailing_slash": iss.token(iss=FORGE_ISSUER + "/"),
        "wrong_audience": iss.token(aud="someone-else"),
        "audience_list_without_pgward": iss.token(aud=["a", "b"]),
        "no_exp": iss.token(exp=None),
        "tampered_signature": jf.tamper_signature(good),
        "tampered_payload": jf.tamper_payload(good, sub="admin"),
        "alg_none": jf.alg_none_token(iss.claims(), kid=iss.kid),
        "alg_none_keeping_signature": jf.alg_none_token(iss.claims(), kid=iss.kid) + good.split(".")[2],
        "hs256_with_public_key": jf.hs256_token(iss.claims(), public_pem, kid=iss.kid),
        "unknown_kid": iss.token(header={"alg": "RS256", "typ": "at+jwt", "kid": "nobody"}),
        "bad_typ": iss.token(header={"alg": "RS256", "typ": "secevent+jwt", "kid": iss.kid}),
        "not_a_jwt": "definitely-not-a-jwt",
        "two_segments": ".".join(good.split(".")[:2]),
    }


BAD_TOKEN_CASES = ["expired", "not_yet_valid", "untrusted_issuer", "issuer_trailing_slash", "wrong_audience",
                   "audience_list_without_pgward", "no_exp", "tampered_signature", "tampered_payload", "alg_none",
                   "alg_none_keeping_signature", "hs256_with_public_key", "unknown_kid", "bad_typ", "not_a_jwt",
                   "two_segments"]


@pytest.fixture(scope="module")
def bad_tokens(forge_issuer):
    return _bad_tokens(forge_issuer)


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
def test_bad_token_refused_with_28000(forge_gateway, bad_tokens, case):
    token = bad_tokens[case]
    result = forge_gateway.login(token)
    assert result.asked_for_password, "the gateway never asked for the token"
    assert_refused(result, "28000", case, contains=AUTH_FAILED)
    assert result.closed, f"{case}: the connection stayed open after FATAL"
    text = forge_gateway.psycopg_error(token)
    assert AUTH_FAILED in text, f"{case}: psycopg saw {text!r}"
    assert_no_token_echo(token, result.error.message, text, forge_gateway.log())


def test_token_from_real_idp_is_untrusted_by_forge_gateway(stack, forge_gateway):
    """Principals are scoped to their issuer: a perfectly valid token from another IdP is refused."""
    token = stack.token("alice-bot")
    result = forge_gateway.login(token)
    assert_refused(result, "28000", "valid token from an issuer this gateway does not trust", contains=AUTH_FAILED)
    assert_no_token_echo(token, result.error.message, forge_gateway.log())


POSITIVE_HEADERS = {
    "typ_at+jwt": {"alg": "RS256", "typ": "at+jwt"},
    "typ_JWT": {"alg": "RS256", "typ": "JWT"},
    "typ_application/at+jwt": {"alg": "RS256", "typ": "application/at+jwt"},
    "typ_absent": {"alg": "RS256"},
}


@pytest.mark.parametrize("case", sorted(POSITIVE_HEADERS))
def test_well_formed_token_passes_authentication(forge_gateway, forge_issuer, case):
    """Positive control: correctly minted tokens get past authentication to the connection lookup
    (3D000: the forge gateway has no connection called 'shop')."""
    header = dict(POSITIVE_HEADERS[case], kid=forge_issuer.kid)
    token = forge_issuer.token(header=header)
    result = forge_gateway.login(token)
    assert_refused(result, "3D000", f"valid token ({case}) should pass authentication")
    assert AUTH_FAILED not in result.error.message


def test_clock_skew_leeway(forge_gateway, forge_issuer):
    """60 s leeway: exp 30 s ago and nbf 30 s ahead still pass; 120 s does not (tested above)."""
    now = _now()
    for label, token in [("exp 30 s ago", forge_issuer.token(exp=now - 30, iat=now - 600)),
                         ("nbf 30 s ahead", forge_issuer.token(nbf=now + 30))]:
        result = forge_gateway.login(token)
        assert_refused(result, "3D000", f"{label} is within the 60 s leeway and should pass authentication")


def test_audience_list_containing_pgward_passes(forge_gateway, forge_issuer):
    result = forge_gateway.login(forge_issuer.token(aud=["other", "pgward"]))
    assert_refused(result, "3D000", "aud list containing pgward should pass authentication")


def _sized_token(iss: jf.RsaIssuer, size: int) -> str:
    base = len(iss.token(pad=""))
    pad = max(0, (size - base) * 3 // 4)
    token = iss.token(pad="x" * pad)
    while len(token) < size:  # base64 rounding: top up one byte at a time
        pad += 1
        token = iss.token(pad="x" * pad)
    assert len(token) == size, f"could not make a token of exactly {size} bytes (got {len(token)})"
    return token


def test_token_over_64_kib_refused(forge_gateway, forge_issuer):
    big = _sized_token(forge_issuer, 64 * 1024 + 1)
    result = forge_gateway.login(big)
    assert_refused(result, "28000", "token of 64 KiB + 1 bytes", contains=AUTH_FAILED)
    text = forge_gateway.psycopg_error(big)
    assert AUTH_FAILED in text and "64 KiB" in text, f"psycopg saw {text!r}"
    assert_no_token_echo(big, result.error.message, text)
    huge = forge_issuer.token(pad="y" * 300_000)
    assert_refused(forge_gateway.login(huge), "28000", "token of ~400 KB", contains=AUTH_FAILED)
    # Boundary positive control: exactly 64 KiB is within the limit.
    at_limit = _sized_token(forge_issuer, 64 * 1024)
    assert_refused(forge_gateway.login(at_limit), "3D000", "a validly signed token of exactly 64 KiB")


def test_empty_password_refused(forge_gateway):
    result = forge_gateway.login("")
    assert_refused(result, "28000", "empty password", contains=AUTH_FAILED)


# ---------------------------------------------------------------------------------------------
# TLS is required (the token is a password).

def test_plaintext_refused_with_28000_mentioning_tls(forge_gateway, forge_issuer):
    token = forge_issuer.token()
    result = forge_gateway.login(token, tls=False)
    assert_refused(result, "28000", "plaintext login", contains="TLS")
    assert not result.asked_for_password, "the gateway asked for the token over plaintext"
    text = forge_gateway.psycopg_error(token, sslmode="disable")
    assert "requires TLS" in text, f"psycopg (sslmode=disable) saw {text!r}"
    assert_no_token_echo(token, forge_gateway.log())


def test_plaintext_refused_on_stack_gateway(stack):
    result = jf.raw_login(stack.gateway_host, stack.gateway_pg_port, "shop", stack.token("alice-bot"), tls=False)
    if result.authenticated:
        pytest.skip("the stack gateway runs with --allow-insecure-loopback")
    assert_refused(result, "28000", "plaintext login to the stack gateway", contains="TLS")


def test_insecure_loopback_allows_plaintext(insecure_gateway, forge_issuer, bad_tokens):
    token = forge_issuer.token()
    result = insecure_gateway.login(token, tls=False)
    assert result.asked_for_password, "with --allow-insecure-loopback the gateway should ask for the token"
    assert_refused(result, "3D000", "plaintext loopback login with --allow-insecure-loopback")
    # Token checks still apply over plaintext.
    assert_refused(insecure_gateway.login(bad_tokens["expired"], tls=False), "28000", "expired token over plaintext",
                   contains=AUTH_FAILED)
    # TLS keeps working on the same gateway.
    assert_refused(insecure_gateway.login(token, tls=True), "3D000", "TLS login on the insecure-loopback gateway")


def test_insecure_loopback_real_plaintext_session(isolated_gateway):
    """Positive control end to end: with --allow-insecure-loopback, psql/psycopg with
    sslmode=disable get a real session (and the same gateway still refuses bad tokens)."""
    env = isolated_gateway(flags=["--allow-insecure-loopback"])
    with env.connect("alice-bot", sslmode="disable") as conn:
        assert conn.pgconn.ssl_in_use is False, "the session was expected to be plaintext"
        assert conn.execute("select count(*) from customers").fetchone()[0] >= 3
    r = env.psql("alice-bot", "select 7 * 6", dsn_overrides={"sslmode": "disable"})
    assert r.returncode == 0 and r.stdout.strip() == "42", (r.returncode, r.stderr)
    bad = env.mint_token("alice-bot", exp=_now() - 300, iat=_now() - 900)
    refused = jf.raw_login(env.gateway_host, env.gateway_pg_port, "shop", bad, tls=False)
    assert_refused(refused, "28000", "expired token over plaintext", contains=AUTH_FAILED)


# ---------------------------------------------------------------------------------------------
# Startup-phase protocol abuse (raw sockets): ErrorResponse 08P01, then the connection closes.

def _raw_exchange(port: int, payload: bytes, tls: bool = False, timeout: float = 5.0):
    sock = jf.tls_connect("127.0.0.1", port) if tls else jf.raw_connect("127.0.0.1", port)
    try:
        try:
            sock.sendall(payload)
        except (ConnectionResetError, BrokenPipeError):
            pass
        data, closed, elapsed = jf.read_until_closed(sock, timeout)
    finally:
        sock.close()
    return data, closed, elapsed


PROTOCOL_ABUSE = {
    "startup_packet_too_large": struct.pack("!II", 10001, jf.PROTOCOL_3) + b"x" * 64,
    "startup_length_huge": struct.pack("!II", 0x7FFFFFF0, jf.PROTOCOL_3),
    "startup_length_too_small": struct.pack("!I", 4) + b"\0" * 8,
    "http_request": b"GET / HTTP/1.1\r\nHost: pgward\r\n\r\n",
    "tls_client_hello_without_sslrequest": bytes.fromhex("160301020001") + os.urandom(200),
    "protocol_2": jf.startup_packet({"user": "x", "database": "shop"}, protocol=2 << 16),
    "unknown_request_code": struct.pack("!II", 8, 1234 << 16 | 9999),
    "random_bytes": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_ABUSE))
def test_startup_garbage_gets_08P01_and_close(forge_gateway, case):
    data, closed, elapsed = _raw_exchange(forge_gateway.port, PROTOCOL_ABUSE[case])
    errors = jf.errors_in(data)
    assert errors, f"{case}: no ErrorResponse (got {data[:80]!r}, closed={closed})"
    assert errors[0].severity == "FATAL" and errors[0].sqlstate == "08P01", f"{case}: {errors[0].fields}"
    assert closed, f"{case}: connection not closed within 5 s after the error"
    assert elapsed < 5


def test_startup_garbage_inside_tls_gets_08P01(forge_gateway):
    data, closed, _ = _raw_exchange(forge_gateway.port, struct.pack("!II", 10001, jf.PROTOCOL_3), tls=True)
    errors = jf.errors_in(data)
    assert errors and errors[0].sqlstate == "08P01", f"oversized startup packet over TLS: {data[:120]!r}"
    assert closed


def test_second_sslrequest_inside_tls_gets_08P01(forge_gateway):
    data, closed, _ = _raw_exchange(forge_gateway.port, jf.ssl_request(), tls=True)
    errors = jf.errors_in(data)
    assert errors and errors[0].sqlstate == "08P01", f"SSLRequest inside TLS: {data[:120]!r}"
    assert closed


def test_plaintext_bytes_pipelined_after_sslrequest_refused(forge_gateway):
    """CVE-2021-23222: bytes sent together with the SSLRequest, before the handshake, are refused.
    As Postgres does, the gateway refuses before answering 'S' (checking after 'S' would also
    catch a prompt, legitimate ClientHello)."""
    payload = jf.ssl_request() + jf.startup_packet({"user": "x", "database": "shop"})
    data, closed, _ = _raw_exchange(forge_gateway.port, payload)
    assert data[:1] == b"E", f"expected an ErrorResponse instead of 'S', got {data[:20]!r}"
    errors = jf.errors_in(data)
    assert errors and errors[0].sqlstate == "08P01", f"pipelined plaintext after SSLRequest: {data[:120]!r}"
    assert closed


def _handshake_probe(port: int) -> tuple[bytes, bytes]:
    """A well-behaved client: SSLRequest, WAIT for 'S', then send a ClientHello. Returns ('S'
    answer, first bytes the server sent back after the ClientHello)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(jf.ssl_request())
        answer = sock.recv(1)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        sock.sendall(outgoing.read())
        return answer, sock.recv(65536)


def test_clienthello_after_s_is_never_mistaken_for_pipelined_plaintext(forge_gateway):
    """A client that waits for 'S' before its ClientHello must never be refused as CVE-2021-23222
    injection. (Found: the gateway checks FIONREAD *after* writing 'S', so a fast ClientHello
    that already arrived counts as 'unencrypted data'; ~0.5% of libpq logins then fail with
    "SSL error: wrong version number".)"""
    refused: list = []
    done = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 20  # time-boxed: about 1000 handshakes on an idle machine

    def worker():
        while time.monotonic() < deadline and done[0] < 1200 and not refused:
            answer, data = _handshake_probe(forge_gateway.port)
            with lock:
                done[0] += 1
                if answer != b"S" or not data or data[0] != 0x16:  # 0x16: TLS handshake record
                    refused.append((answer, data[:90]))
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not refused, (f"a well-behaved TLS client (waits for 'S', then ClientHello) was refused after "
                         f"{done[0]} handshakes: {refused[0]}")
    assert done[0] >= 100, f"only {done[0]} handshakes in 20 s"


def test_non_password_message_after_auth_request_gets_08P01(forge_gateway):
    sock = jf.tls_connect("127.0.0.1", forge_gateway.port)
    try:
        sock.sendall(jf.startup_packet({"user": "x", "database": "shop"}))
        sock.settimeout(5)
        first = sock.recv(64)
        assert first[:1] == b"R", f"expected an authentication request, got {first!r}"
        sock.sendall(b"Q\0\0\0\x0dselect 1\0")  # a query instead of the password
        data, closed, _ = jf.read_until_closed(sock, 5)
    finally:
        sock.close()
    errors = jf.errors_in(data)
    assert errors and errors[0].sqlstate == "08P01", f"query instead of password: {data[:120]!r}"
    assert closed


def test_silent_and_stalled_clients_are_cut_off(forge_gateway, forge_issuer):
    """The login is bounded (10 s): a client that sends nothing, one that stops halfway through the
    startup packet, one that stops after the TLS handshake, and one that never answers the password
    request are all closed within ~15 s, with FATAL 08P01 where the gateway can still speak."""
    silent = jf.raw_connect("127.0.0.1", forge_gateway.port)
    half = jf.raw_connect("127.0.0.1", forge_gateway.port)
    half.sendall(jf.startup_packet({"user": "x", "database": "shop"})[:7])
    after_tls = jf.tls_connect("127.0.0.1", forge_gateway.port)
    no_password = jf.tls_connect("127.0.0.1", forge_gateway.port)
    no_password.sendall(jf.startup_packet({"user": "x", "database": "shop"}))
    start = time.monotonic()
    # Meanwhile, normal logins are served at once.
    assert_refused(forge_gateway.login(forge_issuer.token()), "3D000", "a normal login while others stall")
    assert time.monotonic() - start < 3, "a normal login was slowed down by stalled clients"
    results = {}
    for name, sock in [("silent", silent), ("half_startup", half), ("after_tls", after_tls),
                       ("no_password", no_password)]:
        data, closed, _ = jf.read_until_closed(sock, max(0.1, 15 - (time.monotonic() - start)))
        results[name] = (data, closed, time.monotonic() - start)
        sock.close()
    for name, (data, closed, when) in results.items():
        assert closed, f"{name}: still open {when:.1f} s after connecting (login timeout is 10 s)"
        assert when > 5, f"{name}: closed after only {when:.1f} s, before the login timeout"
        msgs, _ = jf.parse_messages(data)
        if name == "no_password":
            assert msgs and msgs[0].kind == "R", f"no_password: expected the password request first: {data[:60]!r}"
            msgs = msgs[1:]
        if msgs or data and name != "no_password":
            errs = [m for m in msgs if m.kind == "E"]
            assert errs and errs[0].sqlstate == "08P01", f"{name}: bytes came back but no FATAL 08P01: {data[:120]!r}"
    # The two plaintext stallers must have received the FATAL (the gateway can always speak there).
    for name in ("silent", "half_startup"):
        errs = jf.errors_in(results[name][0])
        assert errs and errs[0].sqlstate == "08P01" and errs[0].severity == "FATAL", \
            f"{name}: expected FATAL 08P01 before close, got {results[name][0][:120]!r}"

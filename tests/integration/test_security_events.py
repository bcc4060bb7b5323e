"""Revocation pushed by the identity provider: Security Event Tokens (RFC 8417) POSTed to the
gateway's --events-listen endpoint (RFC 8935), as an OpenID Shared Signals transmitter (Okta,
Microsoft Entra) sends them. CAEP session-revoked / credential-change and RISC
account-disabled for an iss_sub subject end its live sessions at once (57P01) and refuse its
tokens issued before the event; anything not verified changes nothing. The SETs are signed
with the test IdP's own key (Idp.mint_token), so the gateway believes exactly what it would
believe from the IdP."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time

import pytest

import jwt_forge as jf
from pgward_harness import ended_message, free_port, session_id_of, wait_until

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
ACCOUNT_DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"


def _events_gateway(isolated_gateway):
    port = free_port()
    env = isolated_gateway(flags=["--events-listen", f"127.0.0.1:{port}"])
    wait_until(lambda: f"events https :{port}/ssf/events" in env.gateway.log(), 10,
               what="the gateway to listen for security events")
    return env, port


def _https(env, port) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(env.gateway.ca_file))
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


def _push(env, port, body: str, content_type: str = "application/secevent+jwt", method: str = "POST",
          path: str = "/ssf/events", conn: http.client.HTTPSConnection | None = None):
    """One request; returns (status, parsed JSON body or text)."""
    c = conn or _https(env, port)
    try:
        c.request(method, path, body=body.encode(), headers={"Content-Type": content_type,
                                                             "Accept": "application/json"})
        response = c.getresponse()
        data = response.read().decode()
        if response.getheader("Content-Type", "") == "application/json":
            return response.status, json.loads(data)
        return response.status, data
    finally:
        if conn is None:
            c.close()


def _subject_of(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def _set(stack, event_type: str, sub: str, *, at: int | None = None, top_level_subject: bool = False,
         **mint) -> str:
    """A SET about `sub` signed like the IdP's; `mint` overrides (aud=, key=, typ=, iss=, ...)."""
    subject = {"format": "iss_sub", "iss": stack.issuer, "sub": sub}
    event: dict = {"event_timestamp": int(time.time()) if at is None else at}
    extra: dict = {"events": {event_type: event}, "txn": "test"}
    if top_level_subject:
        extra["sub_id"] = subject  # SSF 1.0
    else:
        event["subject"] = subject  # CAEP 1.0
    mint.setdefault("typ", "secevent+jwt")
    return stack.mint_token("unused", extra_claims=extra, drop_claims=("sub", "client_id", "exp", "scope"), **mint)


@pytest.mark.parametrize("event_type,top_level", [(SESSION_REVOKED, False), (CREDENTIAL_CHANGE, True),
                                                  (ACCOUNT_DISABLED, False)])
def test_a_pushed_revocation_ends_the_subjects_sessions_and_refuses_its_older_tokens(
        stack, isolated_gateway, event_type, top_level):
    env, port = _events_gateway(isolated_gateway)
    old = stack.idp.fetch_token("alice-bot")
    sub = _subject_of(old)
    with env.connect("alice-bot", token=old) as first, env.connect("alice-bot", token=old) as second, \
            env.connect("bob-bot") as other:
        sids = {session_id_of(first), session_id_of(second)}
        time.sleep(1.1)  # the event comes strictly after the live sessions' tokens were issued
        pushed = time.monotonic()
        status, body = _push(env, port, _set(stack, event_type, sub, top_level_subject=top_level))
        assert status == 202, body
        for live in (first, second):
            message = wait_until(lambda: ended_message(live), 3, what="the session to end after the push")
            assert "identity provider revoked its principal's tokens" in message, message
        assert time.monotonic() - pushed < 1.0, "the sessions outlived the push by a second or more"
        # Another principal's session on the same agent goes on.
        assert other.execute("SELECT 1").fetchone() == (1,)
    assert env.wait_sessions(lambda ss: {s["session_id"] for s in ss if s["end_reason"] == "token_revoked"} >= sids,
                             principal="alice-bot")
    # Its token from before the event opens nothing, also after a gateway restart; a new one does.
    refused = jf.raw_login("127.0.0.1", env.pg_port, env.connection, old)
    assert refused.error is not None and refused.error.sqlstate == "28000", refused.error
    assert "revoked its tokens issued before" in env.gateway.log()
    env.gateway.restart()
    env.agent.wait_online(True, 30)
    refused = jf.raw_login("127.0.0.1", env.pg_port, env.connection, old)
    assert refused.error is not None and refused.error.sqlstate == "28000", refused.error
    fresh = stack.idp.fetch_token("alice-bot")
    with env.connect("alice-bot", token=fresh) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    assert old not in env.gateway.log() and fresh not in env.gateway.log()


def test_sets_that_cannot_be_believed_are_refused_and_change_nothing(stack, isolated_gateway):
    env, port = _events_gateway(isolated_gateway)
    sub = _subject_of(stack.token("alice-bot"))
    with env.connect("alice-bot") as live:
        time.sleep(1.1)
        foreign = stack.idp.new_untrusted_key()
        cases = [
            ("bad signature", _set(stack, SESSION_REVOKED, sub, key=foreign), 400, "invalid_key"),
            ("foreign aud", _set(stack, SESSION_REVOKED, sub, aud="someone-else"), 400, "invalid_audience"),
            ("no aud", _set(stack, SESSION_REVOKED, sub, aud=None), 400, "invalid_audience"),
            ("untrusted issuer", _set(stack, SESSION_REVOKED, sub, iss="https://evil.example"), 400,
             "invalid_issuer"),
            ("an access token, not a SET", stack.token("alice-bot"), 400, "invalid_request"),
            # Unsigned: no signature part at all, so not even a JWS.
            ("alg none", _set(stack, SESSION_REVOKED, sub, alg="none"), 400, "invalid_request"),
            ("garbage", "not.a.jwt", 400, "invalid_request"),
        ]
        for what, body, want_status, want_err in cases:
            status, answer = _push(env, port, body)
            assert status == want_status, (what, status, answer)
            assert answer["err"] == want_err, (what, answer)
        # Requests that are not a push at all.
        good = _set(stack, SESSION_REVOKED, sub)
        assert _push(env, port, good, content_type="application/jwt")[0] == 415
        assert _push(env, port, "", method="GET")[0] == 405
        assert _push(env, port, good, path="/other")[0] == 404
        assert live.execute("SELECT 1").fetchone() == (1,), "a refused SET ended a session"
    log = env.gateway.log()
    assert "refused a security event token from 127.0.0.1: invalid_key (bad signature)" in log
    assert "refused a security event token from 127.0.0.1: invalid_audience" in log
    # The principal's tokens still work: nothing was recorded.
    refused_nothing = jf.raw_login("127.0.0.1", env.pg_port, env.connection, stack.token("alice-bot"))
    assert refused_nothing.error is None, refused_nothing.error


def test_events_pgward_does_not_act_on_are_acknowledged_and_ignored(stack, isolated_gateway):
    env, port = _events_gateway(isolated_gateway)
    sub = _subject_of(stack.token("alice-bot"))
    with env.connect("alice-bot") as live:
        time.sleep(1.1)
        # Over one kept-alive connection, as transmitters push.
        conn = _https(env, port)
        try:
            for body in (_set(stack, "https://schemas.openid.net/secevent/ssf/event-type/verification", sub),
                         _set(stack, "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
                              sub),
                         stack.mint_token("unused", typ="secevent+jwt",
                                          drop_claims=("sub", "client_id", "exp", "scope"),
                                          extra_claims={"events": {SESSION_REVOKED: {
                                              "subject": {"format": "email", "email": "alice@example.test"}}}})):
                status, answer = _push(env, port, body, conn=conn)
                assert status == 202, answer
        finally:
            conn.close()
        assert live.execute("SELECT 1").fetchone() == (1,)
    assert "acknowledged and ignored: event type not acted on" in env.gateway.log()
    assert "acknowledged and ignored: subject format is not iss_sub" in env.gateway.log()


def test_the_event_endpoint_survives_hostile_http(stack, isolated_gateway):
    env, port = _events_gateway(isolated_gateway)
    context = ssl.create_default_context(cafile=str(env.gateway.ca_file))

    def raw(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with context.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(request)
                out = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        return out
                    out += chunk

    # Request smuggling shapes and oversized input get an error status and a closed connection.
    assert raw(b"POST /ssf/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").startswith(b"HTTP/1.1 501")
    assert raw(b"POST /ssf/events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").startswith(
        b"HTTP/1.1 400")
    assert raw(b"POST /ssf/events HTTP/1.1\r\nContent-Length: 999999\r\n\r\n").startswith(b"HTTP/1.1 413")
    assert raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 431")
    # Plaintext to the TLS port, and a connection that sends nothing, do not hurt it.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /ssf/events HTTP/1.1\r\n\r\n")
        s.settimeout(5)
        try:
            s.recv(100)
        except (ConnectionResetError, socket.timeout):
            pass
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        status, _ = _push(env, port, "", method="GET")
        assert status == 405
    finally:
        idle.close()
    assert env.gateway.alive()

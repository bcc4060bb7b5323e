"""Revocation in the identity provider: with --oidc-introspection the gateway asks the IdP
(RFC 7662) about each token at login and re-checks every live session's token on an interval,
so a token revoked at the IdP (RFC 7009) ends its session and opens no new one. Opaque access
tokens work the same way, the principal coming from the introspection response."""

from __future__ import annotations

import subprocess
import time

import jwt_forge as jf
from pgward_harness import GATEWAY_BIN, ended_message, session_id_of, wait_until


def _introspecting_gateway(stack, isolated_gateway, tmp_path, interval: str = "2s"):
    secret = tmp_path / "introspector.secret"
    secret.write_text(stack.idp.clients["pgward-introspector"]["secret"] + "\n")
    secret.chmod(0o600)
    return isolated_gateway(
        flags=["--oidc-introspection", "--oidc-client-id", "pgward-introspector",
               "--oidc-client-secret-file", str(secret), "--recheck-interval", interval],
        grants=[("principal", "opaque-bot", "read-write")])


def test_an_opaque_token_revoked_at_the_idp_ends_its_session_within_the_recheck_interval(
        stack, isolated_gateway, tmp_path):
    env = _introspecting_gateway(stack, isolated_gateway, tmp_path)
    token = stack.idp.fetch_token("opaque-bot")
    assert token.count(".") != 2, "the test IdP should issue opaque-bot an opaque token"
    assert "introspecting tokens at " in env.gateway.log()
    with env.connect("opaque-bot", token=token) as live:
        sid = session_id_of(live)
        # The principal is the client_id the IdP's introspection response names.
        assert live.execute("SELECT current_setting('pgward.principal')").fetchone() == ("opaque-bot",)
        stack.idp.revoke_token("opaque-bot", token)
        revoked_at = time.monotonic()
        message = wait_until(lambda: ended_message(live), 8, what="the session to end after the IdP revoke")
        assert time.monotonic() - revoked_at < 2 + 2, "the session outlived the 2 s re-check interval by 2 s"
        assert "token was revoked by the identity provider" in message, message
    assert env.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "token_revoked"
                                            for s in ss), principal="opaque-bot")
    # The revoked token opens nothing; a fresh one does.
    refused = jf.raw_login("127.0.0.1", env.pg_port, env.connection, token)
    assert refused.error is not None and refused.error.sqlstate == "28000", refused.error
    assert "token not active (introspection)" in env.gateway.log()
    with env.connect("opaque-bot", token=stack.idp.fetch_token("opaque-bot")) as fresh:
        assert fresh.execute("SELECT 1").fetchone() == (1,)
    assert token not in env.gateway.log(), "a token reached the gateway log"


def test_a_token_the_idp_does_not_vouch_for_is_refused_even_with_a_good_signature(stack, isolated_gateway, tmp_path):
    # oidc-provider refuses to introspect the JWTs it signs (HTTP 400, "structured tokens cannot
    # be introspected"): an introspecting gateway cannot confirm them, and fails closed.
    env = _introspecting_gateway(stack, isolated_gateway, tmp_path)
    env.grant("alice-bot", env.connection, "read-only")
    result = jf.raw_login("127.0.0.1", env.pg_port, env.connection, stack.idp.fetch_token("alice-bot"))
    assert result.error is not None and result.error.sqlstate == "28000", result.error
    assert "authentication failed: introspection: POST " in env.gateway.log()


def test_introspection_flags_are_checked_at_start_up(stack, tmp_path):
    base = [str(GATEWAY_BIN), "--data-dir", str(tmp_path / "data"), "--pg-listen", "127.0.0.1:0",
            "--grpc-listen", "127.0.0.1:0", "--oidc-issuer", stack.issuer, "--oidc-audience", "pgward"]
    no_client = subprocess.run(base + ["--oidc-introspection"], capture_output=True, text=True, timeout=30)
    assert no_client.returncode == 2 and "--oidc-client-id" in no_client.stderr, no_client.stderr
    missing = subprocess.run(base + ["--oidc-introspection", "--oidc-client-id", "x", "--oidc-client-secret-file",
                                     str(tmp_path / "nope")], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "--oidc-client-secret-file" in missing.stderr, missing.stderr
    secret = tmp_path / "s"
    secret.write_text("x\n")
    fast = subprocess.run(base + ["--oidc-introspection", "--oidc-client-id", "x", "--oidc-client-secret-file",
                                  str(secret), "--recheck-interval", "100ms"], capture_output=True, text=True,
                          timeout=30)
    assert fast.returncode == 2 and "--recheck-interval" in fast.stderr, fast.stderr

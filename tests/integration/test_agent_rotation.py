"""Rotating an agent's token: the old one works through the grace period and is refused after
it (the agent still using it is disconnected and cannot reconnect); the new one works; and
--grace 0 revokes a leaked token at once, ending what the agent has open."""

from __future__ import annotations

import signal
import time

import jwt_forge as jf
import pgward_harness as h
from pgward_harness import error_once_ended, session_id_of, unique, wait_until


def _agent_with_connection(stack, prefix: str) -> tuple[h.Agent, str]:
    agent = stack.add_agent(unique(prefix))
    connection = unique("rot_")
    stack.create_connection(connection, agent.name)
    return agent, connection


def _forget(stack, agent: h.Agent, connection: str) -> None:
    agent.stop()
    if agent in stack.agents:
        stack.agents.remove(agent)
    stack.ctl("connection", "delete", connection)
    stack.ctl("agent", "delete", agent.name)


def test_rotation_keeps_the_old_token_through_its_grace_then_disconnects_the_agent_using_it(stack):
    agent, connection = _agent_with_connection(stack, "rot-grace-")
    try:
        stack.grant("alice-bot", connection=connection)
        rotated = stack.ctl_json("agent", "rotate", agent.name, "--grace", "4s")
        rotated_at = time.monotonic()
        new_token = rotated["token"]
        assert new_token and new_token not in agent.token_file.read_text()
        assert rotated["old_token_expires"], rotated
        assert new_token not in stack.gateway_log(), "the new agent token reached the gateway log"

        # Within the grace period the agent on the old token still serves new sessions.
        with stack.connect("alice-bot", dbname=connection) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            # At its end the agent is disconnected, and the session it carried ends with it.
            message = error_once_ended_within(conn, 10)
            assert time.monotonic() - rotated_at < 7, "the old token outlived its grace period by 3 s or more"
            assert "agent's token was rotated" in message, message
        agent.wait_online(False, timeout=5)
        # It keeps trying with the old token and is refused every time.
        wait_until(lambda: f'refused agent "{agent.name}"' in stack.gateway_log(), 15,
                   what="the agent's reconnect with the old token to be refused")
        assert not agent.online()

        # The agent restarted with the new token is back, and serves sessions.
        agent.stop()
        agent.token_file.write_text(new_token + "\n")
        agent.start()
        with stack.connect("alice-bot", dbname=connection) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)
    finally:
        _forget(stack, agent, connection)


def test_sighup_picks_up_the_rotated_token_and_keeps_every_live_session(stack):
    agent, connection = _agent_with_connection(stack, "rot-hup-")
    try:
        stack.grant("alice-bot", connection=connection)
        with stack.connect("alice-bot", dbname=connection) as live:
            live.execute("SELECT 1")
            rotated = stack.ctl_json("agent", "rotate", agent.name, "--grace", "3s")
            agent.token_file.write_text(rotated["token"] + "\n")
            agent.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "the token in --token-file changed" in agent.log(), 10,
                       what="the agent to reconnect with the new token")
            agent.wait_online(True, timeout=10)
            # Past the grace period: nothing is disconnected, the live session goes on.
            time.sleep(4)
            assert live.execute("SELECT 2").fetchone() == (2,)
            assert agent.online()
            assert not [line for line in stack.gateway_log().splitlines()
                        if agent.name in line and "still uses the token" in line]
            with stack.connect("alice-bot", dbname=connection) as fresh:
                assert fresh.execute("SELECT 3").fetchone() == (3,)
        assert rotated["token"] not in agent.log()
    finally:
        _forget(stack, agent, connection)


def test_rotation_without_grace_revokes_a_leaked_token_at_once(stack):
    agent, connection = _agent_with_connection(stack, "rot-now-")
    try:
        stack.grant("alice-bot", connection=connection)
        with stack.connect("alice-bot", dbname=connection) as victim, stack.connect("bob-bot") as other:
            sid = session_id_of(victim)
            out = stack.ctl("agent", "rotate", agent.name, "--grace", "0", check=True).stdout
            assert "stopped working now" in out, out
            assert "agent's token was rotated" in error_once_ended(victim)
            # Another agent's session is untouched.
            assert other.execute("SELECT 3").fetchone() == (3,)
        agent.wait_online(False, timeout=5)
        assert stack.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "agent_token_rotated"
                                                  for s in ss), principal="alice-bot")
        # New sessions on its connection find the agent offline (08006), not a stale grant path.
        result = jf.raw_login("127.0.0.1", stack.pg_port, connection, stack.token("alice-bot"))
        assert result.error is not None and result.error.sqlstate == "08006", result.error
        assert "offline" in result.error.message
    finally:
        _forget(stack, agent, connection)


def test_agent_rotate_refuses_bad_input(stack):
    unknown = stack.ctl("agent", "rotate", unique("no-such-agent-"))
    assert unknown.returncode == 1 and "not found" in unknown.stderr, unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    bad = stack.ctl("agent", "rotate", stack.agent.name, "--grace", "soon")
    assert bad.returncode == 2 and "--grace" in bad.stderr, bad.stderr
    too_long = stack.ctl("agent", "rotate", stack.agent.name, "--grace", "30d")
    assert too_long.returncode == 1 and "7 days" in too_long.stderr, too_long.stderr
    # Neither refusal touched the shared agent.
    assert stack.agent.online()


def error_once_ended_within(conn, seconds: float) -> str:
    return wait_until(lambda: h.ended_message(conn), seconds, what="the session to end")

"""Changing a grant applies to the live sessions it covers: a narrowed session's next statement
is judged by the new policy (and Postgres's own read-only setting follows), a widened one's too,
and a new expiry is watched like any other."""

from __future__ import annotations

import time

import psycopg
import pytest

from pgward_harness import ended_message, session_id_of, unique, wait_until


def _grant_id(grant) -> str:
    return grant["id"] if isinstance(grant, dict) else grant[0]["id"]


def _note_count(stack, tag: str) -> int:
    return stack.pg_sql("select count(*) from notes where author = %s", dbname="shop", params=(tag,))[0][0]


def test_a_narrowed_grant_refuses_the_live_sessions_next_write_and_a_widened_one_allows_it(stack):
    grant_id = _grant_id(stack.grant("erin-bot", mode="read-write"))
    tag = unique("narrow")
    try:
        with stack.connect("erin-bot") as live, stack.connect("alice-bot") as other:
            sid = session_id_of(live)
            live.execute("INSERT INTO notes (author, body) VALUES (%s, 'before')", (tag,))
            assert live.execute("SHOW default_transaction_read_only").fetchone() == ("off",)

            updated = stack.ctl_json("grant", "update", grant_id, "--mode", "read-only")
            assert updated["id"] == grant_id and updated["mode"] == "read-only", updated

            # The very next write of the same session is refused by the agent, and the session
            # itself goes on: reads still work and Postgres now runs it read-only too.
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                live.execute("INSERT INTO notes (author, body) VALUES (%s, 'after')", (tag,))
            assert "read-only" in str(refused.value), str(refused.value)
            assert live.execute("SELECT 1").fetchone() == (1,)
            assert live.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            assert _note_count(stack, tag) == 1
            # Another principal's session on the same agent is untouched.
            other.execute("SELECT 2")

            # Widened again: the write goes through, and Postgres is no longer read-only either.
            stack.ctl_json("grant", "update", grant_id, "--mode", "read-write")
            live.execute("INSERT INTO notes (author, body) VALUES (%s, 'widened')", (tag,))
            assert live.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
            assert _note_count(stack, tag) == 2
        assert f"session {sid} of erin-bot: policy now MODE_READ_ONLY" in stack.gateway_log()
        sessions = stack.ctl_json("session", "list", "--principal", "erin-bot")
        assert any(s["session_id"] == sid and s["end_reason"] == "client_terminate" for s in sessions), sessions
    finally:
        stack.ctl("grant", "delete", grant_id)
        stack.pg_sql("delete from notes where author = %s", dbname="shop", params=(tag,))


def test_narrowing_inside_a_transaction_refuses_the_next_write_and_sets_read_only_after_it(stack):
    grant_id = _grant_id(stack.grant("erin-bot", mode="read-write"))
    tag = unique("narrowtx")
    try:
        with stack.connect("erin-bot", autocommit=False) as live:
            live.execute("INSERT INTO notes (author, body) VALUES (%s, 'in tx')", (tag,))
            stack.ctl_json("grant", "update", grant_id, "--mode", "read-only")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                live.execute("INSERT INTO notes (author, body) VALUES (%s, 'refused')", (tag,))
            live.rollback()
            assert _note_count(stack, tag) == 0
            # The SET waited for the transaction to end (a ROLLBACK would have undone it).
            assert live.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            live.rollback()
            # A RESET ALL would return the setting to its login value: the agent sets it again.
            live.autocommit = True
            live.execute("RESET ALL")
            assert live.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    finally:
        stack.ctl("grant", "delete", grant_id)
        stack.pg_sql("delete from notes where author = %s", dbname="shop", params=(tag,))


def test_an_expiry_set_by_update_ends_the_sessions_the_grant_alone_allowed(stack):
    grant_id = _grant_id(stack.grant("erin-bot", mode="read-only"))
    try:
        with stack.connect("erin-bot") as live:
            sid = session_id_of(live)
            stack.ctl_json("grant", "update", grant_id, "--expires", "3s")
            set_at = time.monotonic()
            assert live.execute("SELECT 1").fetchone() == (1,)
            message = wait_until(lambda: ended_message(live), 8, what="the session to end at the updated expiry")
            assert time.monotonic() - set_at < 5.5, "the session outlived the updated expiry by 2.5 s or more"
            assert "its grant expired" in message, message
        assert stack.wait_sessions(lambda ss: any(s["session_id"] == sid and s["end_reason"] == "grant_expired"
                                                  for s in ss), principal="erin-bot")
    finally:
        stack.ctl("grant", "delete", grant_id)


def test_grant_update_refuses_bad_input_with_one_line_and_a_non_zero_exit(stack):
    grant_id = _grant_id(stack.grant("erin-bot", mode="read-only"))
    try:
        nothing = stack.ctl("grant", "update", grant_id)
        assert nothing.returncode == 2 and "nothing to update" in nothing.stderr, nothing.stderr
        unknown = stack.ctl("grant", "update", "g_doesnotexist", "--mode", "read-write")
        assert unknown.returncode == 1 and "not found" in unknown.stderr, unknown.stderr
        classes_alone = stack.ctl("grant", "update", grant_id, "--mode", "classes")
        assert classes_alone.returncode == 2 and "--classes" in classes_alone.stderr, classes_alone.stderr
        bad_class = stack.ctl("grant", "update", grant_id, "--mode", "classes", "--classes", "read,teleport")
        assert bad_class.returncode == 1 and "teleport" in bad_class.stderr, bad_class.stderr
        past = stack.ctl("grant", "update", grant_id, "--expires", "2000-01-01T00:00:00Z")
        assert past.returncode == 1 and "future" in past.stderr, past.stderr
        # Usage errors (2) add the noun's usage; the gateway's refusals (1) are one line.
        for r in (nothing, unknown, classes_alone, bad_class, past):
            assert r.stderr.startswith("pgwardctl: "), r.stderr
        for r in (unknown, bad_class, past):
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        # None of them changed the grant.
        [g] = [g for g in stack.ctl_json("grant", "list", "--principal", "erin-bot") if g["id"] == grant_id]
        assert g["mode"] == "read-only" and not g.get("expires"), g
        # Classes, then a new class list alone, then never expiring again.
        stack.ctl_json("grant", "update", grant_id, "--mode", "classes", "--classes", "read,write")
        stack.ctl_json("grant", "update", grant_id, "--classes", "read", "--expires", "1h")
        [g] = [g for g in stack.ctl_json("grant", "list", "--principal", "erin-bot") if g["id"] == grant_id]
        assert g["mode"] == "classes" and g["classes"] == ["read"] and g["expires"], g
        stack.ctl_json("grant", "update", grant_id, "--expires", "never")
        [g] = [g for g in stack.ctl_json("grant", "list", "--principal", "erin-bot") if g["id"] == grant_id]
        assert not g.get("expires"), g
    finally:
        stack.ctl("grant", "delete", grant_id)

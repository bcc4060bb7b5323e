"""The audit trail is readable in full: `audit list --after ID` pages forward through any number
of rows, and `audit export --format jsonl` streams every matching row, oldest first, past the
10,000-row cap of one list."""

from __future__ import annotations

import json

from pgward_harness import wait_until


def _fill(stack, count: int) -> str:
    """A fresh session of alice-bot that ran `count` statements and then read its own session id
    (one multi-statement Query: an audit row each); returns the session id once all
    count + 1 rows are stored."""
    sql = " ".join(f"SELECT {i};" for i in range(count)) + " SELECT current_setting('pgward.session_id')"
    r = stack.psql("alice-bot", sql, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert len(lines) == count + 1, r.stdout[-200:]  # psql prints each statement's result
    sid = lines[-1]

    def stored():
        # The newest row is the last statement; the session's end follows its statements.
        sessions = stack.ctl_json("session", "list", "--principal", "alice-bot", "--limit", "50")
        return any(s["session_id"] == sid and s["end_reason"] for s in sessions)
    wait_until(stored, 30, what=f"session {sid} to be recorded as ended")
    newest = stack.audit(session=sid, limit=1)
    assert newest and "current_setting" in newest[0]["statement"], newest
    return sid


def test_audit_list_after_pages_forward_without_gaps_or_repeats(stack):
    sid = _fill(stack, 250)
    expected = sorted(r["id"] for r in stack.audit(session=sid))
    assert len(expected) == 251  # the 250 statements, then the session-id query

    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        r = stack.ctl("audit", "list", "--session", sid, "--after", str(after), "--limit", "100", "--json")
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        pages += 1
        if not rows:
            break
        ids = [row["id"] for row in rows]
        assert ids == sorted(ids) and ids[0] > after, "a page is not oldest first after the cursor"
        seen += ids
        if len(rows) == 100:
            assert f"continue with --after {ids[-1]}" in r.stderr, r.stderr
        after = ids[-1]
    assert seen == expected
    assert pages == 4  # 100 + 100 + 51, then the empty page that ends it

    table = stack.ctl("audit", "list", "--session", sid, "--after", str(expected[-2]), check=True).stdout
    assert str(expected[-1]) in table and "ID" in table.splitlines()[0]


def test_audit_export_streams_every_row_past_the_list_cap(stack):
    sid = _fill(stack, 10_050)
    r = stack.ctl("audit", "export", "--session", sid, "--format", "jsonl", timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10_051, len(lines)
    rows = [json.loads(line) for line in lines]
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {row["session_id"] for row in rows} == {sid}
    assert {row["principal"] for row in rows} == {"alice-bot"}
    # The same fields as audit list --json.
    [listed] = stack.ctl_json("audit", "list", "--session", sid, "--limit", "1")
    assert list(rows[-1].keys()) == list(listed.keys()) and rows[-1] == listed

    # The default format is jsonl; other formats and list-only flags are usage errors.
    default = stack.ctl("audit", "export", "--session", sid, "--since", "1h", timeout=120)
    assert default.returncode == 0 and len(default.stdout.splitlines()) == 10_051
    csv = stack.ctl("audit", "export", "--format", "csv")
    assert csv.returncode == 2 and "use jsonl" in csv.stderr, csv.stderr
    limit = stack.ctl("audit", "export", "--limit", "5")
    assert limit.returncode == 2, limit.stderr
    bad_after = stack.ctl("audit", "list", "--after", "-3")
    assert bad_after.returncode == 2 and "--after" in bad_after.stderr, bad_after.stderr

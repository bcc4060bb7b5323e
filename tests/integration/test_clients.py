"""Real Postgres clients through pgward: psql, pgbench, psql \\copy, psycopg 3, pgJDBC, node-pg.

Every test talks to the gateway with a token as the password and checks the effect in
Postgres directly (stack.pg_sql bypasses pgward)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from pgward_harness import PG_BIN, unique

HERE = Path(__file__).resolve().parent
JDBC_JAR = Path("/usr/share/java/postgresql.jar")


@pytest.fixture
def table(stack):
    """A fresh table owned by app (so principals can write it through the gateway); dropped after."""
    name = unique("t_clients_")
    stack.pg_sql(f"CREATE TABLE {name} (id serial PRIMARY KEY, n int, label text, v text)", user="app")
    yield name
    stack.pg_sql(f"DROP TABLE IF EXISTS {name}", user="app")


def count(stack, table: str, where: str = "true") -> int:
    return stack.pg_sql(f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


def ok(result: subprocess.CompletedProcess, what: str) -> str:
    assert result.returncode == 0, f"{what} failed (rc={result.returncode}): {result.stderr.strip()}"
    return result.stdout


# ---- psql ----------------------------------------------------------------------------


def test_psql_simple_queries(stack):
    out = ok(stack.psql("alice-bot", "SELECT count(*) FROM customers"), "psql count")
    assert out.strip() == "3"
    out = ok(stack.psql("alice-bot", "SELECT id, name, country FROM customers ORDER BY id"), "psql select")
    assert out.splitlines() == ["1|Ada|UK", "2|Grace|US", "3|Linus|FI"]
    out = ok(stack.psql("bob-bot", "SELECT c.name, sum(o.total) FROM customers c JOIN orders o "
                                   "ON o.customer_id = c.id GROUP BY c.name ORDER BY 2 DESC"), "psql join")
    assert out.splitlines()[0] == "Grace|117.40"


def test_psql_multi_statement_query(stack, table):
    # One -c string = one simple-protocol Query message carrying three statements.
    out = ok(stack.psql("alice-bot", f"INSERT INTO {table} (n) VALUES (1), (2); "
                                     f"UPDATE {table} SET label = 'x' WHERE n = 2; "
                                     f"SELECT n, coalesce(label, '-') FROM {table} ORDER BY n"),
             "multi-statement query")
    assert out.splitlines() == ["1|-", "2|x"]
    assert count(stack, table) == 2
    assert count(stack, table, "label = 'x'") == 1


def test_psql_script_with_errors_continues_when_asked(stack, table):
    script = (f"INSERT INTO {table} (n) VALUES (10);\n"
              "SELECT 1/0;\n"
              f"INSERT INTO {table} (n) VALUES (11);\n")
    r = stack.psql("alice-bot", None, "-f", "-", input=script, on_error_stop=False)
    assert "division by zero" in r.stderr
    assert count(stack, table, "n IN (10, 11)") == 2, "the statement after the error must still run"


def test_transaction_rollback_leaves_nothing_and_commit_keeps(stack, table):
    # Separate Query messages (psql script), as an interactive session sends them.
    ok(stack.psql("alice-bot", None, "-f", "-",
                  input=f"BEGIN;\nINSERT INTO {table} (n) VALUES (100);\n"
                        f"SELECT count(*) FROM {table};\nROLLBACK;\n"), "rollback script")
    assert count(stack, table) == 0, "ROLLBACK must leave nothing"
    ok(stack.psql("alice-bot", None, "-f", "-",
                  input=f"BEGIN;\nINSERT INTO {table} (n) VALUES (200);\nCOMMIT;\n"), "commit script")
    assert count(stack, table, "n = 200") == 1, "COMMIT must keep the row"


def test_psycopg_transactions(stack, table):
    with stack.connect("bob-bot", autocommit=False) as conn:
        conn.execute(f"INSERT INTO {table} (n) VALUES (%s)", (1,))
        # Visible inside the transaction, not outside.
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1
        assert count(stack, table) == 0
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        conn.execute(f"INSERT INTO {table} (n) VALUES (%s)", (2,))
        conn.commit()
    assert count(stack, table) == 1 and count(stack, table, "n = 2") == 1


# A refused statement fails the caller's open transaction exactly as a server error would: the
# agent has Postgres raise in its place (ARCHITECTURE.md section 4). alice-bot's grant is
# read-write, which leaves out the procedure class: a DO block is refused.
REFUSED_DO = "DO $$ BEGIN PERFORM 1; END $$"


def test_psql_refusal_in_a_transaction_rolls_it_back(stack, table):
    r = stack.psql("alice-bot", None, "-f", "-", on_error_stop=False,
                   input=f"BEGIN;\nINSERT INTO {table} (n) VALUES (1);\n{REFUSED_DO};\n"
                         f"SELECT count(*) FROM {table};\nCOMMIT;\n")
    assert "statement refused" in r.stderr, r.stderr
    assert "current transaction is aborted" in r.stderr, "later statements must get 25P02 until the end"
    assert count(stack, table) == 0, "the write before the refusal must not be committed"
    # The session is not spoiled: the next transaction commits.
    ok(stack.psql("alice-bot", f"BEGIN; INSERT INTO {table} (n) VALUES (2); COMMIT"), "next transaction")
    assert count(stack, table, "n = 2") == 1


def test_psycopg_refusal_in_a_transaction_leaves_it_failed(stack, table):
    with stack.connect("alice-bot", autocommit=False) as conn:
        conn.execute(f"INSERT INTO {table} (n) VALUES (1)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="statement refused"):
            conn.execute(REFUSED_DO)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute(f"SELECT count(*) FROM {table}")
        conn.commit()  # the server answers ROLLBACK
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert count(stack, table) == 0, "the write before the refusal must not be committed"
        # Outside a transaction a refusal leaves the session idle, and the next statement runs.
        conn.autocommit = True
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(REFUSED_DO)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute(f"INSERT INTO {table} (n) VALUES (3)")
    assert count(stack, table) == 1


def test_psycopg_extended_refusal_in_a_transaction_leaves_it_failed(stack, table):
    # With parameters (and prepare=True) psycopg uses the extended protocol: Parse/Bind/Execute.
    with stack.connect("alice-bot", autocommit=False) as conn:
        conn.execute(f"INSERT INTO {table} (n) VALUES (%s)", (1,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="statement refused"):
            conn.execute(REFUSED_DO, prepare=True)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute(f"SELECT count(*) FROM {table} WHERE n > %s", (0,))
        conn.commit()
        assert count(stack, table) == 0, "the write before the refusal must not be committed"
        # A pipeline (one implicit transaction up to its Sync): the refusal rolls back the
        # statements before it, as a server error would, and skips those after it.
        conn.autocommit = True
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.pipeline():
                conn.execute(f"INSERT INTO {table} (n) VALUES (%s)", (10,))
                conn.execute(REFUSED_DO, prepare=True)
                conn.execute(f"INSERT INTO {table} (n) VALUES (%s)", (11,))
        assert count(stack, table) == 0, "a refusal in a pipeline must roll back its implicit transaction"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.autocommit = False
        # The session's prepared statements still work afterwards.
        assert conn.execute("SELECT name FROM customers WHERE id = %s", (1,), prepare=True).fetchone() == ("Ada",)
        conn.commit()


# ---- pgbench -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgbench_initialized(stack):
    """pgbench -i DIRECTLY against Postgres (as app, in shop): pgward is not in this path."""
    r = subprocess.run([str(PG_BIN / "pgbench"), "-i", "-s", "1", "-q", stack.direct_dsn()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"pgbench -i (direct) failed: {r.stderr}"
    yield
    stack.pg_sql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history",
                 user="app")


@pytest.mark.parametrize("mode", ["extended", "prepared"])
def test_pgbench_through_gateway(stack, pgbench_initialized, mode):
    before = stack.pg_sql("SELECT count(*) FROM pgbench_history")[0][0]
    r = subprocess.run([str(PG_BIN / "pgbench"), "-n", "-M", mode, "-c", "2", "-j", "2", "-T", "3",
                        stack.dsn("alice-bot")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"pgbench -M {mode} through pgward failed: {r.stderr[-2000:]}"
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert failed and failed.group(1) == "0", r.stdout
    processed = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    assert processed and int(processed.group(1)) > 0, r.stdout
    tps = re.search(r"tps = ([0-9.]+)", r.stdout)
    assert tps and float(tps.group(1)) > 0, r.stdout
    assert "error" not in r.stderr.lower(), r.stderr
    # The TPC-B-like script inserts one history row per transaction.
    after = stack.pg_sql("SELECT count(*) FROM pgbench_history")[0][0]
    assert after - before == int(processed.group(1))


# ---- COPY ----------------------------------------------------------------------------


def test_copy_in_and_out_with_psql(stack, table, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("".join(f"{i},label {i},\"quoted, {i}\"\n" for i in range(1, 1001)))
    out = ok(stack.psql("alice-bot", f"\\copy {table} (n, label, v) FROM '{src}' WITH (FORMAT csv)"),
             "\\copy from")
    assert count(stack, table) == 1000
    assert stack.pg_sql(f"SELECT sum(n), min(v) FROM {table}")[0] == (500500, "quoted, 1")
    dst = tmp_path / "out.csv"
    ok(stack.psql("bob-bot", f"\\copy (SELECT n, label, v FROM {table} ORDER BY n) TO '{dst}' WITH (FORMAT csv)"),
       "\\copy to")
    assert dst.read_text() == src.read_text()
    # COPY ... TO STDOUT over the simple protocol, read-only principal.
    out = ok(stack.psql("grp-bot", "COPY (SELECT id, name FROM customers ORDER BY id) TO STDOUT"), "copy to stdout")
    assert out.splitlines() == ["1\tAda", "2\tGrace", "3\tLinus"]


def test_psycopg_copy_both_ways(stack, table):
    with stack.connect("alice-bot") as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (n, label) FROM STDIN") as copy:
                for i in range(500):
                    copy.write_row((i, f"r{i}"))
        assert count(stack, table) == 500
        with conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT n FROM {table} ORDER BY n) TO STDOUT") as copy:
                got = [int(row[0]) for row in copy.rows()]
        assert got == list(range(500))


# ---- psycopg 3 extended protocol -----------------------------------------------------


def test_psycopg_server_side_parameters(stack):
    with stack.connect("bob-bot") as conn:
        cur = conn.cursor()
        cur.execute("SELECT name, country FROM customers WHERE id = %s", (2,))
        assert cur.fetchall() == [("Grace", "US")]
        cur.execute("SELECT %s::int + %s::int, %s::text", (40, 2, "it's"))
        assert cur.fetchone() == (42, "it's")
        cur.execute("SELECT name FROM customers WHERE country = ANY(%s) ORDER BY id", (["UK", "FI"],))
        assert [r[0] for r in cur.fetchall()] == ["Ada", "Linus"]
        # Binary results over Bind/Execute.
        with conn.cursor(binary=True) as bcur:
            bcur.execute("SELECT id, total FROM orders WHERE customer_id = %s ORDER BY id", (2,))
            assert [(r[0], str(r[1])) for r in bcur.fetchall()] == [(2, "17.50"), (3, "99.90")]
        # A server-side error on the extended protocol, then the session continues.
        with pytest.raises(psycopg.errors.UndefinedTable):
            cur.execute("SELECT * FROM no_such_table WHERE id = %s", (1,))
        cur.execute("SELECT %s::int", (7,))
        assert cur.fetchone() == (7,)


def test_psycopg_named_prepared_statement_reused(stack):
    mark = stack.pg_log_mark()
    with stack.connect("alice-bot", prepare_threshold=None) as conn:
        names = []
        for i in (1, 2, 3, 1, 2):
            row = conn.execute("SELECT name FROM customers WHERE id = %s", (i,), prepare=True).fetchone()
            names.append(row[0])
        assert names == ["Ada", "Grace", "Linus", "Ada", "Grace"]
        prepared = conn.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE '_pg3_%'").fetchall()
        assert len(prepared) == 1, f"one named statement expected in the upstream session, got {prepared}"
        stmt_name = prepared[0][0]
        # SQL-level PREPARE/EXECUTE too.
        conn.execute("PREPARE by_country(text) AS SELECT count(*) FROM customers WHERE country = $1")
        assert conn.execute("EXECUTE by_country('US')").fetchone() == (1,)
        assert conn.execute("EXECUTE by_country('UK')").fetchone() == (1,)
        conn.execute("DEALLOCATE by_country")
    # Postgres saw the same named statement executed five times, attributed to alice-bot.
    log = stack.pg_log(mark)
    executes = re.findall(rf"app=pgward:alice-bot .*execute {re.escape(stmt_name)}: SELECT name FROM customers", log)
    assert len(executes) == 5, f"expected 5 executions of {stmt_name} in the Postgres log:\n{log[-3000:]}"


# ---- pgJDBC --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jdbc_classes(tmp_path_factory):
    if not shutil.which("javac") or not JDBC_JAR.exists():
        pytest.skip("javac or /usr/share/java/postgresql.jar missing (deploy/install-deps.sh installs them)")
    out = tmp_path_factory.mktemp("jdbc")
    r = subprocess.run(["javac", "-d", str(out), "-cp", str(JDBC_JAR), str(HERE / "java" / "PgwardJdbcTest.java")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"javac failed: {r.stderr}"
    return out


# pgJDBC's defaults send `SET application_name = 'PostgreSQL JDBC Driver'` (and SET
# extra_float_digits) as queries right after login, because it does not assume a 9.0+ server;
# with assumeMinServerVersion=9.0 it sends them in the startup packet instead. Both are how
# Java applications connect in practice, so both must work through pgward.
@pytest.mark.parametrize("props", [[], ["assumeMinServerVersion=9.0"]], ids=["driver-defaults", "assume-9.0"])
def test_jdbc_queries_prepared_loop_batch_and_transaction(stack, table, jdbc_classes, props):
    mark = stack.pg_log_mark()
    url = f"jdbc:postgresql://127.0.0.1:{stack.pg_port}/{stack.connection}"
    r = subprocess.run(["java", "-cp", f"{JDBC_JAR}:{jdbc_classes}", "PgwardJdbcTest", url, "jdbc-user",
                        stack.token("bob-bot"), table, *props], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and not props and "application_name" in r.stderr:
        pytest.fail("pgJDBC with default settings cannot connect through pgward: its post-login "
                    "`SET application_name = 'PostgreSQL JDBC Driver'` is refused "
                    f"(pgward should accept/ignore the driver's own application_name): {r.stderr.strip()}",
                    pytrace=False)
    assert r.returncode == 0, f"JDBC program failed: {r.stderr.strip()}\n{r.stdout}"
    got = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert got["customers"] == "3"
    assert got["principal"] == "bob-bot"
    assert got["application_name"] == "pgward:bob-bot"
    assert got["loop"] == ",".join(["Ada", "Grace", "Linus"] * 3 + ["Ada"])
    assert got["batch"] == "50"
    # The refusal failed the transaction in the server: 25P02 after it, and the commit rolled back.
    assert got["refused"] == "42501"
    assert got["after_refusal"] == "25P02"
    assert count(stack, table, "label = 'before-refusal'") == 0
    assert got["count"] == "51"
    assert got["done"] == "ok"
    assert count(stack, table) == 51
    assert count(stack, table, "label = 'rolled-back'") == 0
    assert count(stack, table, "label = 'committed'") == 1
    assert stack.pg_sql(f"SELECT sum(n) FROM {table} WHERE label LIKE 'batch-%'")[0][0] == sum(range(50))
    # pgJDBC switched to a named server-side statement (S_n) for the loop.
    log = stack.pg_log(mark)
    assert re.search(r"app=pgward:bob-bot .*execute S_\d+: SELECT name FROM customers WHERE id = \$1", log), \
        f"no named-statement execution in the Postgres log:\n{log[-3000:]}"


# ---- node-pg -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_client():
    node_dir = HERE / "node"
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed")
    if not (node_dir / "node_modules" / "pg").is_dir():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=node_dir, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"npm ci in {node_dir} failed (registry unreachable?): {r.stderr[-500:]}")
    return node_dir / "client.js"


def test_node_pg_parameterized_queries(stack, table, node_client):
    env = dict(os.environ, PGWARD_HOST="127.0.0.1", PGWARD_PORT=str(stack.pg_port), PGWARD_DB=stack.connection,
               PGWARD_USER="node-user", PGWARD_TOKEN=stack.token("alice-bot"), PGWARD_TABLE=table)
    r = subprocess.run(["node", str(node_client)], capture_output=True, text=True, timeout=60, env=env)
    assert r.stdout.strip(), f"node-pg client failed before finishing its queries: {r.stderr.strip()}"
    got = json.loads(r.stdout)
    assert got["customer"] == {"name": "Grace", "country": "US"}
    assert got["sum"] == 42
    assert got["named"] == ["Ada", "Grace", "Linus"]
    assert got["inserted"] == 1
    assert got["principal"] == "alice-bot"
    assert stack.pg_sql(f"SELECT v FROM {table} ORDER BY id") == [("kept",)]
    # client.end() sends Terminate; the server must close quietly (no ErrorResponse after it).
    assert r.returncode == 0, f"node-pg client did not end cleanly: {r.stderr.strip()}"


# ---- raw protocol: Terminate -------------------------------------------------------


def test_terminate_closes_quietly(stack):
    """After the caller's Terminate ('X') the server closes the socket without sending anything
    (libpq ignores a late ErrorResponse; node-pg and others surface it as an error)."""
    import socket
    import ssl
    import struct

    sock = socket.create_connection(("127.0.0.1", stack.pg_port), timeout=10)
    sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
    assert sock.recv(1) == b"S"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(sock)

    def read_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = tls.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_msg():
        hdr = read_exact(5)
        if hdr is None:
            return None
        body = read_exact(struct.unpack("!i", hdr[1:])[0] - 4)
        return hdr[:1], body

    body = b"user\0raw\0database\0shop\0\0"
    tls.sendall(struct.pack("!ii", 8 + len(body), 196608) + body)
    assert read_msg()[0] == b"R"  # AuthenticationCleartextPassword
    pw = stack.token("alice-bot").encode() + b"\0"
    tls.sendall(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
    while True:
        msg = read_msg()
        assert msg is not None and msg[0] != b"E", f"login failed: {msg}"
        if msg[0] == b"Z":
            break
    tls.sendall(b"X" + struct.pack("!i", 4))
    after = []
    try:
        while (msg := read_msg()) is not None:
            after.append(msg)
    except (ssl.SSLError, OSError):
        pass
    tls.close()
    assert after == [], f"the gateway sent {after} after the caller's Terminate"

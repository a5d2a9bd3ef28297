"""The SQL sandbox: model-written SQL can read, but never write, attach, load code, hang or raise."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegir.tasks.commerce.sandbox import (
    MAX_SQL_CHARS,
    MAX_VALUE_BYTES,
    QueryResult,
    _Refused,
    run_query,
    single_select,
)
from tests.unit.sql_hostile_corpus import build_db

TIMEOUT_S = 0.25
CUT_OFF_S = 5 * TIMEOUT_S + 1.0  # "cut off", not a performance assertion


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_db(tmp_path_factory.mktemp("sandbox") / "shop.db")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_hostile(db: Path, sql: str, **kwargs: object) -> QueryResult:
    """Run `sql` and check the invariants every hostile query must keep: bounded time, db bytes and dir intact."""
    before_hash, before_files = sha256(db), sorted(p.name for p in db.parent.iterdir())
    start = time.monotonic()
    result = run_query(db, sql, timeout_s=TIMEOUT_S, **kwargs)
    elapsed = time.monotonic() - start
    assert isinstance(result, QueryResult)
    assert elapsed < CUT_OFF_S, (sql, elapsed)
    assert sha256(db) == before_hash, sql
    assert sorted(p.name for p in db.parent.iterdir()) == before_files, sql
    if not result.ok:
        assert result.error and result.rows is None
    return result


# ---------------------------------------------------------------------------------------------------------------
# Normal queries
# ---------------------------------------------------------------------------------------------------------------


def test_select_returns_rows_columns_and_tables(db: Path) -> None:
    result = run_query(db, "SELECT c.state, COUNT(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id "
                           "GROUP BY c.state ORDER BY c.state;")
    assert result.ok and result.error is None and not result.truncated
    assert result.columns == ["state", "n"]
    assert result.rows == [("MG", 20), ("RJ", 20), ("SP", 20)]
    assert result.tables == {"orders", "customers"}


def test_tables_seen_as_sqlite_sees_them(db: Path) -> None:
    assert run_query(db, "select count(*) from ORDERS").tables == {"orders"}  # count(*) reads no column
    assert run_query(db, 'SELECT 1 FROM "customers", [orders] LIMIT 1').tables == {"customers", "orders"}
    assert run_query(db, "WITH t AS (SELECT total FROM orders) SELECT max(total) FROM t").tables == {"orders"}
    assert run_query(db, "SELECT * FROM big_orders").tables == {"big_orders", "orders"}  # the view and its base
    assert run_query(db, "SELECT 1").tables == frozenset()


def test_with_cte_and_unicode_literals_work(db: Path) -> None:
    result = run_query(db, "WITH x(v) AS (SELECT 'São Paulo; ok') SELECT v, length(v) FROM x")
    assert result.ok and result.rows == [("São Paulo; ok", 13)]


def test_row_cap_sets_truncated(db: Path) -> None:
    result = run_query(db, "SELECT id FROM orders", max_rows=5)
    assert result.ok and result.truncated and result.rows == [(1,), (2,), (3,), (4,), (5,)]
    exact = run_query(db, "SELECT id FROM orders WHERE id <= 5", max_rows=5)
    assert exact.ok and not exact.truncated and len(exact.rows) == 5


def test_result_byte_cap_sets_truncated(db: Path) -> None:
    result = run_query(db, "SELECT hex(zeroblob(5000)) FROM orders", max_result_bytes=25_000)
    assert result.ok and result.truncated and len(result.rows) < 60


def test_invalid_utf8_in_results_is_replaced_not_raised(db: Path) -> None:
    result = run_query(db, "SELECT CAST(x'ff41' AS TEXT)")
    assert result.ok and result.rows == [("\ufffdA",)]


def test_sql_errors_and_missing_db_are_results(db: Path, tmp_path: Path) -> None:
    assert "no such table" in run_query(db, "SELECT * FROM nope").error
    assert not run_query(db, "SELECT FROM WHERE").ok
    missing = tmp_path / "missing.db"
    result = run_query(missing, "SELECT 1")
    assert not result.ok and "not found" in result.error and not missing.exists()
    assert not run_query(object(), "SELECT 1").ok  # type: ignore[arg-type]
    assert not run_query(db, None).ok  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# The text gate
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 1", "SELECT 1"),
    ("SELECT 1;", "SELECT 1"),
    ("  select 1 ;; -- done\n ;", "  select 1 "),
    ("SELECT ';' AS s; /* trailing */", "SELECT ';' AS s"),
    ('SELECT "a;b" FROM t', 'SELECT "a;b" FROM t'),
    ("SELECT [x;y] FROM t", "SELECT [x;y] FROM t"),
    ("SELECT 'it''s; fine'", "SELECT 'it''s; fine'"),
    ("/* lead */ WITH a AS (SELECT 1) SELECT * FROM a", "/* lead */ WITH a AS (SELECT 1) SELECT * FROM a"),
    ("SELECT 1 -- ; DROP TABLE t", "SELECT 1 -- ; DROP TABLE t"),
    ("SELECT trim(name) FROM t", "SELECT trim(name) FROM t"),
])
def test_single_select_accepts_one_statement(sql: str, expected: str) -> None:
    assert single_select(sql) == expected


@pytest.mark.parametrize("sql", [
    "", "   ", ";", "-- only a comment", "SELECT 1; DROP TABLE orders", "SELECT 1;DELETE FROM orders",
    "SELECT 1 --\n; DROP TABLE orders", "SELECT 1 /* x */; /* y */ SELECT 2", "SELECT 'a'; 'b'",
    "INSERT INTO orders VALUES (1)", "PRAGMA writable_schema=1", "ATTACH 'x.db' AS x", "EXPLAIN SELECT 1",
    "(SELECT 1)", "VALUES (1)", "SELECT 'unterminated", 'SELECT "unterminated', "SELECT [unterminated",
    "SELECT 1 /* unterminated", "SELECT \x00 1", "SELECT '\ud800'", "SELECT ltrim(name, 'x') FROM t",
    'SELECT "RTRIM" /* c */ (name, name) FROM t', "SELECT 1" + " " * MAX_SQL_CHARS,
])
def test_single_select_refuses(sql: str) -> None:
    with pytest.raises(_Refused):
        single_select(sql)


# ---------------------------------------------------------------------------------------------------------------
# Hostile corpus
# ---------------------------------------------------------------------------------------------------------------

REFUSED = [
    "INSERT INTO orders VALUES (999, 1, 1.0, 'x')",
    "UPDATE orders SET total = 0",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "CREATE TABLE evil (x)",
    "CREATE TEMP TABLE evil (x)",
    "ALTER TABLE orders ADD COLUMN evil",
    "REPLACE INTO orders VALUES (1, 1, 1.0, 'x')",
    "WITH a AS (SELECT 1) INSERT INTO orders(total) SELECT * FROM a",
    "WITH a AS (SELECT 1) UPDATE orders SET total = 0",
    "WITH a AS (SELECT 1) DELETE FROM orders",
    "ATTACH DATABASE '{dir}/evil.db' AS evil",
    "SELECT 1; ATTACH DATABASE '{dir}/evil.db' AS evil",
    "DETACH DATABASE main",
    "PRAGMA writable_schema=1",
    "PRAGMA query_only=OFF",
    "PRAGMA journal_mode=WAL",
    "SELECT * FROM pragma_table_info('orders')",
    "SELECT load_extension('x')",
    "SELECT load_extension('/tmp/evil.so', 'init')",
    "SELECT fts3_tokenizer('simple')",
    "SELECT 1; DROP TABLE orders",
    "SELECT 1;\nDROP TABLE orders;",
    "SELECT 1 --\n; DROP TABLE orders",
    "SELECT randomblob(1e9)",
    "SELECT zeroblob(1e9)",
    f"SELECT zeroblob({MAX_VALUE_BYTES + 1})",
    "SELECT length(printf('%.*c', 1000000000, 'x'))",
    "SELECT format('%.*c', 1000000000, 'x')",
    "SELECT ltrim(hex(zeroblob(40000)), hex(zeroblob(40000)) || 'a')",
    "SELECT group_concat(hex(zeroblob(20000))) FROM orders a, orders b",
    "VACUUM INTO '{dir}/copy.db'",
    "BEGIN; DELETE FROM orders; COMMIT",
    "SAVEPOINT s",
    "REINDEX",
    "ANALYZE",
    "SELECT \x00; DROP TABLE orders",
    "SELECT '\udcff'",
    "SELECT 1 /* ; */ ; DROP /* x */ TABLE orders",
    "SELECT * FROM orders WHERE status = '' ; DELETE FROM orders WHERE '' = ''",
    "SELECT random() FROM orders",
    "SELECT ?",
    "SELECT :name",
]

CUT_OFF = [
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c ORDER BY x DESC",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT length(group_concat(x)) FROM c",
    "SELECT count(*) FROM orders a, orders b, orders c, orders d, orders e, orders f",
    "SELECT count(*) FROM orders a, orders b, orders c, orders d WHERE a.total + b.total > c.total * d.total",
    "SELECT a.*, b.*, c.* FROM orders a, orders b, orders c, orders d ORDER BY a.total * b.id - c.id + d.id",
    "SELECT sum(length(hex(zeroblob(40000 + a.id + b.id + c.id)))) FROM orders a, orders b, orders c",
]

HARMLESS = [  # may run: comment tricks that only look dangerous
    "SELECT 1 /* ; DROP TABLE orders */",
    "SELECT 1 -- ; DROP TABLE orders",
    "SELECT '; DROP TABLE orders; --' AS s",
    'SELECT "; DROP TABLE orders" FROM orders LIMIT 1',
    "SELECT * FROM orders a, orders b, orders c",  # 216 000 rows: the row cap cuts it
    "SELECT * FROM sqlite_master",
    "SELECT CAST(x'c328' AS TEXT)",
    "SELECT 'é' || char(0) || 'x'",
    "select * from orders where id = 1 or 1=1; --",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_hostile_statements_are_refused(db: Path, sql: str) -> None:
    sql = sql.replace("{dir}", str(db.parent))
    result = run_hostile(db, sql)
    assert not result.ok, sql
    assert not (db.parent / "evil.db").exists() and not (db.parent / "copy.db").exists()


@pytest.mark.parametrize("sql", CUT_OFF)
def test_bombs_are_cut_off(db: Path, sql: str) -> None:
    result = run_hostile(db, sql)
    assert not result.ok, sql
    assert "timeout" in result.error or "too big" in result.error, result.error


@pytest.mark.parametrize("sql", HARMLESS)
def test_comment_tricks_are_harmless(db: Path, sql: str) -> None:
    result = run_hostile(db, sql)
    if result.ok:
        assert len(result.rows) <= 1000


def test_huge_cross_join_hits_the_row_cap(db: Path) -> None:
    result = run_hostile(db, "SELECT * FROM orders a, orders b, orders c")
    assert result.ok and result.truncated and len(result.rows) == 1000


def test_timeout_is_reported(db: Path) -> None:
    result = run_hostile(db, CUT_OFF[0])
    assert result.error.startswith("timeout") and result.elapsed_s >= TIMEOUT_S


def test_readonly_even_if_text_gate_is_bypassed(db: Path) -> None:
    """Defence in depth: the connection itself refuses writes that slip past the text gate."""
    from aegir.tasks.commerce import sandbox

    before = sha256(db)
    conn = sandbox._open_read_only(db, 1.0)
    try:
        with pytest.raises(sqlite3.Error):
            conn.execute("DELETE FROM orders")
        with pytest.raises(sqlite3.Error):
            conn.execute(f"ATTACH DATABASE '{db.parent / 'evil.db'}' AS evil")
    finally:
        conn.close()
    assert sha256(db) == before and not (db.parent / "evil.db").exists()


# ---------------------------------------------------------------------------------------------------------------
# Property tests: arbitrary text never raises and never writes
# ---------------------------------------------------------------------------------------------------------------

# Any code point, lone surrogates (text that is not valid UTF-8) and NULs included.
ANY_TEXT = st.lists(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr), st.sampled_from("\x00;'\"-/*")),
                    max_size=300).map("".join)
SQL_FRAGMENTS = st.lists(st.sampled_from([
    "SELECT ", "WITH ", "x AS (SELECT 1) ", "* ", "1 ", "FROM ", "orders ", "customers ", "; ", ";", "DROP TABLE ",
    "DELETE FROM ", "INSERT INTO ", "ATTACH ", "PRAGMA ", "'", '"', "`", "[", "]", "--", "\n", "/*", "*/", "(", ")",
    ",", "count(*) ", "load_extension('x') ", "zeroblob(1e9) ", "WHERE ", "id ", "= ", "\x00", "é", "\ud800",
    "UNION ALL ", "RECURSIVE ", "ltrim(", "printf(", "x'ff' ",
]), max_size=14).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=st.one_of(ANY_TEXT, SQL_FRAGMENTS))
def test_arbitrary_text_never_raises_or_writes(db: Path, sql: str) -> None:
    run_hostile(db, sql)

"""The commerce world: byte-for-byte determinism, row counts, referential integrity, Brazilian data sanity."""

from __future__ import annotations

import sqlite3
import time
from datetime import date
from pathlib import Path

import pytest

from aegir.errors import InputError
from aegir.tasks.commerce.world import (
    CITIES,
    ORDER_STATUSES,
    PAYMENT_METHODS,
    SCALES,
    TABLE_COLUMNS,
    UF_CODES,
    WorldInfo,
    build_world,
    open_readonly,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WorldInfo:
    return build_world(11, tmp_path_factory.mktemp("world") / "commerce.db")


@pytest.fixture
def db(world: WorldInfo) -> sqlite3.Connection:
    connection = open_readonly(world.path)
    yield connection
    connection.close()


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(tmp_path: Path, world: WorldInfo) -> None:
    again = build_world(11, tmp_path / "again.db")
    assert again.path.read_bytes() == world.path.read_bytes()
    assert again.sha256 == world.sha256 and again.row_counts == world.row_counts
    other = build_world(12, tmp_path / "other.db")
    assert other.sha256 != world.sha256
    rebuilt = build_world(11, tmp_path / "other.db")  # overwriting an existing file gives the same bytes too
    assert rebuilt.sha256 == world.sha256
    assert not list(tmp_path.glob(".*.tmp"))


def test_small_world_is_fast_and_has_the_scale_row_counts(tmp_path: Path, db: sqlite3.Connection,
                                                          world: WorldInfo) -> None:
    started = time.perf_counter()
    build_world(5, tmp_path / "timed.db")
    assert time.perf_counter() - started < 2.0
    for table, expected in SCALES["small"].items():
        assert world.row_counts[table] == expected
    for table in TABLE_COLUMNS:
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == world.row_counts[table]
    assert world.row_counts["order_items"] >= world.row_counts["orders"]
    assert world.row_counts["payments"] >= world.row_counts["orders"]
    assert 0 < world.row_counts["reviews"] < world.row_counts["orders"]


def test_columns_match_the_declared_tables(db: sqlite3.Connection) -> None:
    for table, columns in TABLE_COLUMNS.items():
        assert tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})")) == columns


def test_foreign_keys_hold(db: sqlite3.Connection) -> None:
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    orphans = {
        "item without product": "SELECT COUNT(*) FROM order_items oi LEFT JOIN products p ON p.id = oi.product_id "
                                "WHERE p.id IS NULL",
        "item without order": "SELECT COUNT(*) FROM order_items oi LEFT JOIN orders o ON o.id = oi.order_id "
                              "WHERE o.id IS NULL",
        "order without customer": "SELECT COUNT(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
                                  "WHERE c.id IS NULL",
        "order without items": "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS "
                               "(SELECT 1 FROM order_items oi WHERE oi.order_id = o.id)",
        "order without payment": "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS "
                                 "(SELECT 1 FROM payments pay WHERE pay.order_id = o.id)",
        "product without seller": "SELECT COUNT(*) FROM products p LEFT JOIN sellers s ON s.id = p.seller_id "
                                  "WHERE s.id IS NULL",
    }
    for what, sql in orphans.items():
        assert db.execute(sql).fetchone()[0] == 0, what


def test_totals_equal_items_and_payments(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT o.id, o.total, "
                      "(SELECT SUM(quantity * unit_price) FROM order_items WHERE order_id = o.id), "
                      "(SELECT SUM(value) FROM payments WHERE order_id = o.id) FROM orders o").fetchall()
    for order_id, total, items, paid in rows:
        assert total == pytest.approx(items, abs=0.005), order_id
        assert total == pytest.approx(paid, abs=0.005), order_id
    mismatched = db.execute("SELECT COUNT(*) FROM order_items oi JOIN products p ON p.id = oi.product_id "
                            "WHERE oi.unit_price <> p.price").fetchone()[0]
    assert mismatched == 0


def test_brazilian_data_is_plausible(db: sqlite3.Connection) -> None:
    known_cities = {(city, state) for city, state, _ in CITIES}
    assert all(state in UF_CODES for _, state, _ in CITIES)
    for table in ("customers", "sellers"):
        assert set(db.execute(f"SELECT DISTINCT city, state FROM {table}").fetchall()) <= known_cities
    assert {row[0] for row in db.execute("SELECT DISTINCT status FROM orders")} <= set(ORDER_STATUSES)
    assert {row[0] for row in db.execute("SELECT DISTINCT method FROM payments")} <= set(PAYMENT_METHODS)
    assert db.execute("SELECT COUNT(*) FROM payments WHERE installments > 1 AND method <> 'cartão'").fetchone()[0] == 0
    assert db.execute("SELECT MIN(score), MAX(score) FROM reviews").fetchone() == (1, 5)
    assert db.execute("SELECT MIN(price) > 0, MAX(price) < 10000 FROM products").fetchone() == (1, 1)
    assert db.execute("SELECT COUNT(DISTINCT name) = COUNT(*) FROM products").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(DISTINCT name) = COUNT(*) FROM sellers").fetchone()[0] == 1
    for purchase, delivered, status in db.execute("SELECT purchase_date, delivered_date, status FROM orders"):
        assert date(2022, 1, 1) <= date.fromisoformat(purchase) <= date(2024, 12, 31)
        assert (delivered is not None) == (status == "entregue")
        if delivered:
            assert date.fromisoformat(delivered) > date.fromisoformat(purchase)
    late_reviews = db.execute("SELECT COUNT(*) FROM reviews r JOIN orders o ON o.id = r.order_id "
                              "WHERE r.created_at < o.purchase_date").fetchone()[0]
    assert late_reviews == 0


def test_open_readonly_cannot_write_and_missing_files_are_input_errors(world: WorldInfo, tmp_path: Path) -> None:
    connection = open_readonly(world.path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        connection.execute("DELETE FROM orders")
    connection.close()
    with pytest.raises(InputError, match="no such database file"):
        open_readonly(tmp_path / "absent.db")


def test_bad_arguments_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown scale 'huge'"):
        build_world(1, tmp_path / "w.db", scale="huge")
    with pytest.raises(InputError, match="data_seed"):
        build_world("1", tmp_path / "w.db")  # type: ignore[arg-type]

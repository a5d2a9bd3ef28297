"""Serialization of a column with its context under byte budgets (aegir/tasks/tables/serialize.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegir.tasks.tables.serialize import (
    MIN_TOTAL_BYTES,
    SerializeBudget,
    marker,
    serialize_column,
    utf8_prefix,
)
from aegir.tasks.tables.table import Table
from aegir.tokenizer import CLS_ID, SEP_ID

TABLE = Table.from_rows("Product_shop.example_1", [
    ["Kestrel Lamp", "19.99", "EUR", None],
    ["Nimbus Desk", "249.00", "EUR", "InStock"],
    ["Orbit Mug", None, "EUR", "OutOfStock"],
], headers=["name", "offers.price", "offers.priceCurrency", "offers.availability"])


def _segment(ids: list[int], start: int, end: int) -> str:
    return bytes(ids[start:end]).decode("utf-8")


def test_format_target_first_then_context_with_markers_and_separators() -> None:
    out = serialize_column(TABLE, 1, [3, 2])
    assert out.text == ("<|cls|>target: 19.99 | 249.00<|sep|>context: InStock | OutOfStock<|sep|>"
                        "context: EUR | EUR | EUR<|sep|>")
    assert out.ids[0] == CLS_ID and out.ids[-1] == SEP_ID
    assert [(span.column, span.role) for span in out.spans] == [(1, "target"), (3, "context"), (2, "context")]
    for span in out.spans:
        assert out.ids[span.end] == SEP_ID  # every segment is closed by a [SEP]
        assert _segment(out.ids, span.start, span.end).startswith(f"{span.role}: ")
    assert out.ids.count(CLS_ID) == 1 and out.ids.count(SEP_ID) == 3


def test_cpa_puts_the_target_then_the_main_column() -> None:
    out = serialize_column(TABLE, 3, [1, 0, 3], main=0)
    assert out.text == ("<|cls|>target: InStock | OutOfStock<|sep|>main: Kestrel Lamp | Nimbus Desk | Orbit Mug"
                        "<|sep|>context: 19.99 | 249.00<|sep|>")  # main and target are not repeated as context


def test_headers_follow_the_role_only_when_asked_and_present() -> None:
    budget = SerializeBudget(include_headers=True)
    assert serialize_column(TABLE, 2, [1], budget).text.startswith(
        "<|cls|>target [offers.priceCurrency]: EUR | EUR | EUR<|sep|>context [offers.price]: 19.99")
    headless = Table.from_rows("Product_x_2", [["a", "b"]])
    assert serialize_column(headless, 0, [1], budget).text == "<|cls|>target: a<|sep|>context: b<|sep|>"


def test_column_budget_stops_at_a_value_boundary() -> None:
    table = Table.from_rows("T_x_1", [["aaaa"], ["bbbb"], ["cccc"]])
    # marker "target: " is 8 bytes; 8 + len("aaaa | bbbb") = 19 <= 20 < 8 + len("aaaa | bbbb | cccc")
    out = serialize_column(table, 0, [], SerializeBudget(target_bytes=20))
    assert out.text == "<|cls|>target: aaaa | bbbb<|sep|>"


def test_a_first_value_longer_than_the_budget_is_cut_on_a_character_boundary() -> None:
    table = Table.from_rows("T_x_1", [["ééééé"], ["short"]])  # é is 2 bytes
    out = serialize_column(table, 0, [], SerializeBudget(target_bytes=8 + 5))
    span = out.spans[0]
    assert span.end - span.start <= 13
    assert _segment(out.ids, span.start, span.end) == "target: éé"  # 4 bytes; a 5th would split a character


def test_value_bytes_cuts_each_value_and_missing_cells_are_skipped() -> None:
    table = Table.from_rows("T_x_1", [["abcdefgh"], [None], ["ijklmnop"]])
    out = serialize_column(table, 0, [], SerializeBudget(value_bytes=3))
    assert out.text == "<|cls|>target: abc | ijk<|sep|>"


def test_total_budget_drops_whole_context_columns_and_keeps_the_target() -> None:
    table = Table.from_rows("T_x_1", [["t" * 30, "a" * 30, "b" * 30]])
    budget = SerializeBudget(target_bytes=40, per_column_bytes=40, total_bytes=60)
    out = serialize_column(table, 0, [1, 2], budget)
    # [CLS] + 38 (target) + [SEP] = 40; 20 left: "context: " (9) + 10 bytes of 'a' + [SEP]; nothing for column 2
    assert out.text == "<|cls|>target: " + "t" * 30 + "<|sep|>context: " + "a" * 10 + "<|sep|>"
    assert len(out.ids) == 60
    tight = serialize_column(table, 0, [1, 2], SerializeBudget(target_bytes=40, per_column_bytes=40, total_bytes=50))
    assert [span.column for span in tight.spans] == [0]  # 10 left: no room for "context: " + a byte + [SEP]


def test_the_cpa_main_column_is_never_crowded_out() -> None:
    table = Table.from_rows("T_x_1", [["t" * 50, "m" * 50]])
    out = serialize_column(table, 0, [], SerializeBudget(target_bytes=60, total_bytes=MIN_TOTAL_BYTES), main=1)
    assert len(out.ids) == MIN_TOTAL_BYTES
    assert out.text == "<|cls|>target: t<|sep|>main: m<|sep|>"


def test_bad_budgets_and_columns_are_rejected() -> None:
    with pytest.raises(ValueError, match="total_bytes"):
        serialize_column(TABLE, 0, [], SerializeBudget(total_bytes=MIN_TOTAL_BYTES - 1))
    with pytest.raises(ValueError, match="target_bytes"):
        serialize_column(TABLE, 0, [], SerializeBudget(target_bytes=5))
    with pytest.raises(ValueError, match="outside table"):
        serialize_column(TABLE, 7, [])
    with pytest.raises(ValueError, match="role"):
        marker("subject")  # type: ignore[arg-type]


def test_utf8_prefix() -> None:
    assert utf8_prefix("aé€".encode(), 10) == "aé€".encode()
    assert utf8_prefix("aé€".encode(), 2) == b"a"  # é would be split
    assert utf8_prefix("aé€".encode(), 5) == "aé".encode()  # € (3 bytes) would be split
    assert utf8_prefix(b"abc", 0) == b""


cells = st.one_of(st.none(), st.text(min_size=0, max_size=40))


@st.composite
def tables_and_budgets(draw: st.DrawFn) -> tuple[Table, int, list[int], int | None, SerializeBudget]:
    n_cols = draw(st.integers(1, 7))
    rows = draw(st.lists(st.lists(cells, min_size=n_cols, max_size=n_cols), min_size=1, max_size=8))
    headers = draw(st.one_of(st.none(), st.lists(st.text(max_size=12), min_size=n_cols, max_size=n_cols)))
    table = Table.from_rows("T_x_1", rows, headers)
    target = draw(st.integers(0, n_cols - 1))
    main = draw(st.one_of(st.none(), st.integers(0, n_cols - 1).filter(lambda c: c != target)))
    context = draw(st.lists(st.integers(0, n_cols - 1), max_size=8))
    budget = SerializeBudget(target_bytes=draw(st.integers(9, 120)), per_column_bytes=draw(st.integers(1, 80)),
                             total_bytes=draw(st.integers(MIN_TOTAL_BYTES, 400)), value_bytes=draw(st.integers(1, 50)),
                             include_headers=draw(st.booleans()))
    return table, target, context, main, budget


@settings(max_examples=150, deadline=None)
@given(tables_and_budgets())
def test_budgets_are_never_exceeded_and_the_structure_holds(case) -> None:
    table, target, context, main, budget = case
    out = serialize_column(table, target, context, budget, main)
    assert len(out.ids) <= budget.total_bytes
    assert out.ids[0] == CLS_ID and out.ids[-1] == SEP_ID
    assert out.spans[0].column == target and out.spans[0].role == "target"
    if main is not None:
        assert (out.spans[1].column, out.spans[1].role) == (main, "main")
    assert len({span.column for span in out.spans}) == len(out.spans)  # no column twice
    position = 1
    for span in out.spans:
        assert span.start == position and out.ids[span.end] == SEP_ID
        position = span.end + 1
        limit = budget.per_column_bytes if span.role == "context" else budget.target_bytes
        assert span.end - span.start <= limit
        text = _segment(out.ids, span.start, span.end)  # never a split UTF-8 character
        assert text.startswith(f"{span.role}")
        assert all(token < 256 for token in out.ids[span.start:span.end])
    assert position == len(out.ids)

"""The SOTAB v2 loader on tiny files in the real format, written by the tests (aegir/tasks/tables/sotab.py)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from aegir.errors import InputError
from aegir.tasks.tables.dataset import build_column_dataset
from tests.conftest import tables_data
from aegir.tasks.tables.sotab import ground_truth_name, load_sotab, read_ground_truth

PRODUCT = "Product_shop.example_September2020_CTA.json.gz"
EVENT = "Event_tickets.example_September2020_CTA.json.gz"
BOOK = "Book_books.example_September2020_CTA.json.gz"
HOTEL = "Hotel_stay.example_September2020_CTA.json.gz"


def write_table(directory: Path, name: str, rows: list[Any] | None = None, lines: list[str] | None = None) -> Path:
    """A gzipped JSON-lines table: one row a line, {"0": cell, "1": cell, ...}."""
    directory.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines if lines is not None else [json.dumps(row) for row in rows or []]) + "\n"
    path = directory / name
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A complete little CTA+CPA release: training, validation and test splits."""
    write_table(tmp_path / "Train", PRODUCT, [
        {"0": "Kestrel Lamp", "1": "19.99", "2": "EUR", "3": None},
        {"0": "Nimbus Desk", "1": 249, "2": "EUR", "3": ["a", "b"]},
        {"0": "Orbit  Mug\n", "1": "4.50", "2": "EUR", "3": {"@type": "Offer"}},
    ])
    write_table(tmp_path / "Train", EVENT, [
        {"0": "Jazz Night", "1": "2021-06-05T19:30"}, {"0": "Book Fair", "1": "2021-10-01T10:00"},
    ])
    write_table(tmp_path / "Validation", BOOK, [["The Silent River", "978-3-16-148410-0"], ["Paper Moon", None]])
    write_table(tmp_path / "Test", HOTEL, [{"0": "Hotel Central", "1": "+49 30 1234567"}])
    write_csv(tmp_path / ground_truth_name("cta", "train"),
              f"table_name,column_index,label\n{PRODUCT},0,Product/name\n{PRODUCT},1,price\n{PRODUCT},2,currency\n"
              f"{EVENT},0,Event/name\n{EVENT},1,DateTime\n")
    write_csv(tmp_path / ground_truth_name("cta", "val"),
              f"table_name,column_index,label\n{BOOK},0,Book/name\n{BOOK},1,IdentifierAT\n")
    write_csv(tmp_path / ground_truth_name("cta", "test"),
              f"table_name,column_index,label\n{HOTEL},0,Hotel/name\n{HOTEL},1,telephone\n")
    write_csv(tmp_path / ground_truth_name("cpa", "train"),
              f"table_name,main_column_index,column_index,label\n{PRODUCT},0,1,price\n{PRODUCT},0,2,priceCurrency\n"
              f"{EVENT},0,1,startDate\n")
    return tmp_path


def test_good_files_load_with_official_splits_and_cells_as_text(root: Path) -> None:
    corpus = load_sotab(root, "cta")
    assert corpus.source == "sotab" and set(corpus.tables) == {PRODUCT, EVENT, BOOK, HOTEL}
    assert corpus.official_split == {PRODUCT: "train", EVENT: "train", BOOK: "val", HOTEL: "test"}
    product = corpus.tables[PRODUCT]
    assert product.headers is None and product.n_columns == 4 and product.topic == "Product"
    assert product.columns[0] == ("Kestrel Lamp", "Nimbus Desk", "Orbit Mug")  # whitespace normalised
    assert product.columns[1] == ("19.99", "249", "4.50")  # numbers become text
    assert product.columns[3] == (None, '["a","b"]', '{"@type":"Offer"}')  # nested values become compact JSON
    assert corpus.tables[BOOK].columns[1] == ("978-3-16-148410-0", None)  # JSON arrays are rows too
    assert corpus.label_vocabulary("cta") == sorted(
        ["Product/name", "price", "currency", "Event/name", "DateTime", "Book/name", "IdentifierAT", "Hotel/name",
         "telephone"])
    assert len(corpus.sha256) == 64 and load_sotab(root, "cta").sha256 == corpus.sha256


def test_cpa_files_with_and_without_a_main_column(root: Path) -> None:
    corpus = load_sotab(root, "cpa", carve=("val", "test"))  # the fixture has CPA training ground truth only
    assert [(p.table, p.main_column, p.column, p.label) for p in corpus.cpa] == [
        (PRODUCT, 0, 1, "price"), (PRODUCT, 0, 2, "priceCurrency"), (EVENT, 0, 1, "startDate")]
    write_csv(root / ground_truth_name("cpa", "train"), f"table_name,column_index,label\n{PRODUCT},2,priceCurrency\n")
    assert [(p.main_column, p.column) for p in load_sotab(root, "cpa", carve=("val", "test")).cpa] == [(0, 2)]
    ambiguous = write_csv(root / ground_truth_name("cpa", "train"),
                          f"table_name,column_index,target_column_index,label\n{PRODUCT},0,2,priceCurrency\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(ambiguous))}:1: unrecognised column target_column_index"):
        load_sotab(root, "cpa", carve=("val", "test"))


def test_files_in_a_subdirectory_and_extra_csv_columns_are_found(tmp_path: Path) -> None:
    merged = tmp_path / "CTA-SCH-Datasets_Merged"
    write_table(merged / "Train", PRODUCT, [{"0": "Lamp", "1": "9.99"}])
    write_csv(merged / ground_truth_name("cta", "train"),
              f",table_name,column_index,label\n0,{PRODUCT},1,price\n")  # a pandas index column in front
    corpus = load_sotab(tmp_path, "cta", carve=("val", "test"))
    assert [(a.table, a.column, a.label) for a in corpus.cta] == [(PRODUCT, 1, "price")]


def _error(root: Path, kind: str = "cta", **kwargs: Any) -> str:
    with pytest.raises(InputError) as caught:
        load_sotab(root, kind, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message  # one line
    return message


def test_a_malformed_csv_row_names_the_file_and_line(root: Path) -> None:
    csv = write_csv(root / ground_truth_name("cta", "train"),
                    f"table_name,column_index,label\n{PRODUCT},0,Product/name\n{PRODUCT},1,price,extra\n")
    assert _error(root) == f"{csv}:3: expected 3 fields (table_name, column_index, label), got 4"


def test_bad_values_in_the_csv_name_the_file_and_line(root: Path) -> None:
    csv = root / ground_truth_name("cta", "train")
    write_csv(csv, f"table_name,column_index,label\n{PRODUCT},0,Product/name\n\n{PRODUCT},one,price\n")
    assert _error(root) == f"{csv}:4: column_index must be a non-negative integer"  # blank line 3 counted
    write_csv(csv, f"table_name,column_index,label\n{PRODUCT},0,Product/name\n{PRODUCT},1,  \n")
    assert _error(root) == f"{csv}:3: label must be a non-empty string"
    write_csv(csv, f"table_name,column_index,label\n{PRODUCT},-1,price\n")
    assert _error(root) == f"{csv}:2: column_index must be a non-negative integer"
    write_csv(csv, f"table_name,column_index,label\n{PRODUCT},1,price\n{PRODUCT},1,currency\n")
    assert _error(root) == f"{csv}:3: duplicate annotation (same table and column as an earlier line)"
    write_csv(csv, "table,col,label\nx,1,price\n")
    assert _error(root).startswith(f"{csv}:1: header lacks table_name, column_index")
    write_csv(csv, "")
    assert _error(root).startswith(f"{csv}: empty file")
    cpa = write_csv(root / ground_truth_name("cpa", "train"),
                    f"table_name,main_column_index,column_index,label\n{PRODUCT},1,1,price\n")
    assert _error(root, "cpa", carve=("val", "test")) == f"{cpa}:2: main_column_index equals column_index (a column cannot be its own " \
                                  f"main column)"


def test_a_malformed_json_line_names_the_table_file_and_line(root: Path) -> None:
    path = write_table(root / "Train", EVENT, lines=['{"0": "Jazz Night", "1": "2021-06-05"}', "",
                                                     '{"0": "Book Fair", "1": }'])
    assert _error(root) == f"{path}:3: invalid JSON: Expecting value (column 25)"


def test_a_json_line_that_is_not_a_row_names_the_file_and_line(root: Path) -> None:
    path = write_table(root / "Train", EVENT, lines=['{"0": "Jazz Night"}', '"just a string"'])
    assert _error(root).startswith(f"{path}:2: a row must be a JSON object")
    path = write_table(root / "Train", EVENT, lines=['{"0": "Jazz Night", "name": "x"}'])
    assert _error(root).startswith(f"{path}:1: a row must be a JSON object")


def test_unknown_tables_and_columns_out_of_range_name_the_csv_line(root: Path) -> None:
    csv = root / ground_truth_name("cta", "train")
    write_csv(csv, f"table_name,column_index,label\n{PRODUCT},0,Product/name\nMissing_x_CTA.json.gz,0,Event/name\n")
    message = _error(root)
    assert message.startswith(f"{csv}:3: unknown table Missing_x_CTA.json.gz: no such file in ")
    write_csv(csv, f"table_name,column_index,label\n{EVENT},5,DateTime\n")
    assert _error(root) == f"{csv}:2: column_index 5 out of range: table {EVENT} has 2 columns in its first 20 rows"


def test_other_file_problems(root: Path, tmp_path: Path) -> None:
    (root / "Train" / EVENT).write_bytes(b"not gzip at all")
    assert _error(root).startswith(f"{root / 'Train' / EVENT}: not a readable gzip file")
    write_table(root / "Train", EVENT, lines=[""])
    assert _error(root) == f"{root / 'Train' / EVENT}: no rows (the table file is empty)"
    write_table(root / "Train", EVENT, [{"0": "x", "1": "y"}])
    val = write_csv(root / ground_truth_name("cta", "val"), f"table_name,column_index,label\n{EVENT},0,Event/name\n")
    assert _error(root) == (f"{val}:2: table {EVENT} is also annotated in {ground_truth_name('cta', 'train')} "
                            f"(line 5); splits must not share tables")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(empty) == f"{empty}: no {ground_truth_name('cta', 'train')} (looked in {empty} and its " \
                            f"sub-directories)"
    assert _error(tmp_path / "nowhere").startswith(f"{tmp_path / 'nowhere'}: no such directory")


def test_max_tables_keeps_a_seeded_subset_per_split(root: Path) -> None:
    one = load_sotab(root, "cta", max_tables=1, seed=0)
    assert sum(split == "train" for split in one.official_split.values()) == 1
    assert {a.table for a in one.cta} == set(one.tables)
    assert load_sotab(root, "cta", max_tables=1, seed=0).tables.keys() == one.tables.keys()
    assert one.label_vocabulary("cta") == load_sotab(root, "cta").label_vocabulary("cta")  # not the subset's
    picks = {tuple(sorted(load_sotab(root, "cta", max_tables=1, seed=s).tables)) for s in range(8)}
    assert len(picks) > 1  # the subset depends on the seed


def test_max_rows_limits_what_is_read(root: Path) -> None:
    write_table(root / "Train", EVENT, lines=['{"0": "a", "1": "b"}', '{"0": "c", "1": "d"}', "not json"])
    corpus = load_sotab(root, "cta", max_rows=2)  # the bad third line is never read
    assert corpus.tables[EVENT].columns[0] == ("a", "c")


def test_read_ground_truth_directly(root: Path) -> None:
    records = read_ground_truth(root / ground_truth_name("cta", "val"), "cta")
    assert [(r.table, r.column, r.label, r.line) for r in records] == [(BOOK, 0, "Book/name", 2),
                                                                        (BOOK, 1, "IdentifierAT", 3)]


def test_the_dataset_uses_official_splits_and_carves_missing_ones(root: Path) -> None:
    data = build_column_dataset({"data": tables_data(source="sotab", root=str(root))}, 0, "cta")
    assert {e.table for e in data.train} == {PRODUCT, EVENT}
    assert {e.table for e in data.val} == {BOOK} and {e.table for e in data.test} == {HOTEL}
    assert data.labels == sorted(data.labels) and len(data.labels) == 9
    assert data.provenance["tables"]["source"] == "sotab" and data.provenance["tables"]["root"] == str(root)
    assert data.render(data.val[0]).startswith("<|cls|>target: The Silent River | Paper Moon<|sep|>context: ")
    (root / ground_truth_name("cta", "val")).unlink()
    with pytest.raises(InputError, match=r"no sotab_v2_cta_validation_set\.csv .*task\.data\.sotab_carve=\[val\]"):
        build_column_dataset(tables_data(source="sotab", root=str(root), val_fraction=0.5), 0, "cta")
    carved = build_column_dataset(tables_data(source="sotab", root=str(root), val_fraction=0.5,
                                              sotab_carve=["val"]), 0, "cta")
    assert len({e.table for e in carved.val}) == 1 and not {e.table for e in carved.val} & {e.table for e in
                                                                                             carved.train}
    cpa = build_column_dataset(tables_data(source="sotab", root=str(root), sotab_carve=["val", "test"]), 0, "cpa")
    assert {e.main_column for e in cpa.train + cpa.val + cpa.test} == {0}


def test_a_requested_but_absent_test_file_is_an_error_naming_it(root: Path) -> None:
    """Issue 19 item 8: sotab_test_set=corner_cases without its file used to carve a test split out of training."""
    message = _error(root, test_set="corner_cases")
    assert message.startswith(f"{root}: no {ground_truth_name('cta', 'test', 'corner_cases')} ")
    assert "task.data.sotab_carve=[test]" in message
    (root / ground_truth_name("cta", "test")).unlink()
    assert ground_truth_name("cta", "test") in _error(root)
    carved = load_sotab(root, "cta", carve=("test",))  # asked for: no test ground truth is read
    assert "test" not in set(carved.official_split.values())
    with pytest.raises(InputError, match="sotab_carve"):
        load_sotab(root, "cta", carve=("train",))


def test_carving_on_request_through_the_dataset(root: Path) -> None:
    with pytest.raises(InputError, match=r"sotab_v2_cta_corner_cases_test_set\.csv"):
        build_column_dataset(tables_data(source="sotab", root=str(root), sotab_test_set="corner_cases"), 0, "cta")
    carved = build_column_dataset(tables_data(source="sotab", root=str(root), sotab_test_set="corner_cases",
                                              sotab_carve=["test"], test_fraction=0.5), 0, "cta")
    assert carved.test and not {e.table for e in carved.test} & {e.table for e in carved.train}
    assert HOTEL not in {e.table for e in carved.test}  # the official test table is not read at all

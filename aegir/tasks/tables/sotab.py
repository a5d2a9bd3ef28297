"""Loader for the real SOTAB v2 (Schema.org) CTA / CPA files, validated with pandera.

Layout under ``root`` (the archives unpack in slightly different ways, so each file is
looked for in ``root`` and in its sub-directories one level down)::

    sotab_v2_cta_training_set.csv          CTA ground truth: table_name, column_index, label
    sotab_v2_cta_training_set_small.csv    (task.data.sotab_train_set=training_small)
    sotab_v2_cta_validation_set.csv
    sotab_v2_cta_test_set.csv              (or ..._{random,corner_cases,missing_values,format_heterogeneity}_test_set)
    sotab_v2_cpa_*.csv                     CPA ground truth: table_name, main_column_index, column_index, label
                                           (a file without main_column_index means the main column is 0; any
                                           other *column* field is an error rather than a guess)
    Train/ Validation/ Test/               tables: <table_name> = <Topic>_<site>_..._{CTA,CPA}.json.gz

A table file is gzipped JSON lines, one row a line: ``{"0": cell, "1": cell, ...}`` (column-index keys, no
headers); a JSON array of cells is accepted too. Cells may be strings, numbers, null, lists or objects (the latter
are kept as compact JSON text). A table is looked up in the split's directory next to its CSV, then under
``root``, then in the CSV's own directory.

Validation: every problem is an :class:`~aegir.errors.InputError` with one line naming the file
and the line -- a CSV record with the wrong number of fields, a non-integer or negative index, an empty label, a
duplicate annotation, a table named in a CSV that has no file, an index outside the table, a table annotated in two
splits, a table line that is not JSON or not a row. Only the first ``max_rows`` rows of a table are read, so a
malformed line further down is not seen.

Splits: the training / validation / test CSVs give the official splits. A validation or test ground-truth file that
is absent is an error naming it (a benchmark must never report scores on a test set it silently made up), unless
the split is listed in ``carve`` (``task.data.sotab_carve``): then its file is not read and the dataset carves the
split out of the training tables. ``max_tables`` keeps a fixed, ``seed``-chosen subset of each split's
tables (for quick runs); the label vocabulary is still that of every ground-truth row read. ``sha256`` hashes every
ground-truth and table file read (name and bytes).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from aegir.errors import InputError
from aegir.tasks.data_files import parse_json_line
from aegir.tasks.tables.data_config import TEST_SETS, TRAIN_SETS
from aegir.tasks.tables.table import (
    SPLITS,
    ColumnLabel,
    Kind,
    PairLabel,
    Split,
    Table,
    TableCorpus,
)

SPLIT_DIRS: dict[Split, str] = {"train": "Train", "val": "Validation", "test": "Test"}
CTA_HEADERS: tuple[str, ...] = ("table_name", "column_index", "label")
CPA_HEADERS: tuple[str, ...] = ("table_name", "main_column_index", "column_index", "label")


def ground_truth_name(kind: Kind, split: Split, variant: str | None = None) -> str:
    """File name of a SOTAB v2 ground-truth CSV (``variant``: a TRAIN_SETS entry for train, TEST_SETS for test)."""
    if split == "train":
        suffix = "_small" if variant == "training_small" else ""
        return f"sotab_v2_{kind}_training_set{suffix}.csv"
    if split == "val":
        return f"sotab_v2_{kind}_validation_set.csv"
    if variant in (None, "test"):
        return f"sotab_v2_{kind}_test_set.csv"
    return f"sotab_v2_{kind}_{variant}_test_set.csv"


@dataclass(frozen=True)
class GroundTruthRecord:
    """One ground-truth record with where it came from (for error messages)."""

    table: str
    main_column: int | None
    column: int
    label: str
    source: Path
    line: int


# ----------------------------------------------------------------------------------------------------------------
# Ground-truth CSVs
# ----------------------------------------------------------------------------------------------------------------

def _is_index(value: Any) -> bool:
    return isinstance(value, str) and value.strip().isdigit() and value.strip().isascii()


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _gt_schema(has_main: bool) -> pa.DataFrameSchema:
    element = lambda predicate, error: pa.Check(predicate, element_wise=True, error=error)  # noqa: E731
    columns = {"table_name": pa.Column(None, element(_is_text, "table_name must be a non-empty file name"))}
    if has_main:
        columns["main_column_index"] = pa.Column(None, element(_is_index, "main_column_index must be a "
                                                                         "non-negative integer"))
    columns["column_index"] = pa.Column(None, element(_is_index, "column_index must be a non-negative integer"))
    columns["label"] = pa.Column(None, element(_is_text, "label must be a non-empty string"))
    keys = ["table_name", "column_index"] + (["main_column_index"] if has_main else [])
    checks = [pa.Check(lambda frame: ~frame[keys].apply(lambda col: col.str.strip()).duplicated(),
                       error="duplicate annotation (same table and column as an earlier line)")]
    if has_main:
        checks.append(pa.Check(
            lambda frame: frame["main_column_index"].str.strip() != frame["column_index"].str.strip(),
            error="main_column_index equals column_index (a column cannot be its own main column)"))
    return pa.DataFrameSchema(columns, checks=checks)


def _first_failure(path: Path, failures: pd.DataFrame, lines: Sequence[int], schema: pa.DataFrameSchema) -> str:
    """One line for the earliest failing record; among its failures, the first in schema order."""
    order = [check.error for column in schema.columns.values() for check in column.checks]
    order += [check.error for check in schema.checks]
    located = failures.dropna(subset=["index"])
    if located.empty:
        return f"{path}: {failures.iloc[0]['check']}"
    ranked = located.assign(rank=located["check"].map(lambda name: order.index(name) if name in order else 99))
    first = ranked.sort_values(["index", "rank"], kind="stable").iloc[0]
    return f"{path}:{lines[int(first['index'])]}: {first['check']}"


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None


def read_ground_truth(path: Path, kind: Kind) -> list[GroundTruthRecord]:
    """The records of one ground-truth CSV, validated; errors name the file and the 1-based line."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header: list[str] | None = None
    records: list[list[str]] = []
    lines: list[int] = []
    previous_end = 0
    try:
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record or not any(field.strip() for field in record):
                continue
            if header is None:
                header = [field.strip().lower() for field in record]
                continue
            if len(record) != len(header):
                raise InputError(f"{path}:{start}: expected {len(header)} fields ({', '.join(header)}), "
                                 f"got {len(record)}")
            records.append(record)
            lines.append(start)
    except csv.Error as error:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({error})") from None
    if header is None:
        expected = ", ".join(CTA_HEADERS if kind == "cta" else CPA_HEADERS)
        raise InputError(f"{path}: empty file (expected the header {expected})")
    required = CTA_HEADERS if kind == "cta" else CPA_HEADERS
    has_main = kind == "cpa" and "main_column_index" in header
    needed = [name for name in required if name != "main_column_index" or has_main]
    missing = [name for name in needed if name not in header]
    if missing:
        accepted = ", ".join(CTA_HEADERS) if kind == "cta" else (
            f"{', '.join(CPA_HEADERS)} (or without main_column_index: main column 0)")
        raise InputError(f"{path}:1: header lacks {', '.join(missing)} (found: {', '.join(header)}; expected: "
                         f"{accepted})")
    unknown = [name for name in header if "column" in name and name not in required]
    if kind == "cpa" and unknown:
        # e.g. a target_column_index next to column_index: which one is the main column is not ours to guess
        raise InputError(f"{path}:1: unrecognised column {unknown[0]} (expected: {', '.join(CPA_HEADERS)}, or "
                         f"{', '.join(CTA_HEADERS)} with main column 0)")
    if not records:
        raise InputError(f"{path}: no annotations after the header")
    frame = pd.DataFrame(records, columns=[f"{name}#{i}" for i, name in enumerate(header)])
    frame = pd.DataFrame({name: frame[f"{name}#{header.index(name)}"].astype(object) for name in needed})
    schema = _gt_schema(has_main)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise InputError(_first_failure(path, errors.failure_cases, lines, schema)) from None
    mains = frame["main_column_index"].str.strip().astype(int).tolist() if has_main else (
        [0] * len(frame) if kind == "cpa" else [None] * len(frame))
    return [GroundTruthRecord(table.strip(), main, int(column.strip()), label.strip(), path, line)
            for table, main, column, label, line in zip(frame["table_name"], mains, frame["column_index"],
                                                         frame["label"], lines)]


# ----------------------------------------------------------------------------------------------------------------
# Table files
# ----------------------------------------------------------------------------------------------------------------

def _valid_row(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and all(isinstance(key, str) and key.isdigit() and key.isascii() for key in value)


_ROW_SCHEMA = pa.DataFrameSchema({
    "row": pa.Column(object, pa.Check(_valid_row, element_wise=True,
                                      error='a row must be a JSON object {"0": cell, "1": cell, ...} with '
                                            'column-index keys, or a JSON array of cells')),
})


def _read_table_lines(path: Path, data: bytes, max_rows: int | None) -> tuple[list[Any], list[int]]:
    """Parsed JSON values of the first ``max_rows`` non-blank lines of a (gzipped) JSONL table, with line numbers."""
    stream: io.IOBase = gzip.GzipFile(fileobj=io.BytesIO(data)) if path.name.endswith(".gz") else io.BytesIO(data)
    values: list[Any] = []
    numbers: list[int] = []
    try:
        for number, raw in enumerate(stream, start=1):
            if max_rows is not None and len(values) >= max_rows:
                break
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"{path}:{number}: not UTF-8 text ({error.reason})") from None
            values.append(parse_json_line(text, f"{path}:{number}"))
            numbers.append(number)
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(f"{path}: not a readable gzip file ({error})") from None
    if not values:
        raise InputError(f"{path}: no rows (the table file is empty)")
    return values, numbers


def _cells(value: list[Any] | dict[str, Any]) -> list[Any]:
    if isinstance(value, list):
        return value
    width = max((int(key) for key in value), default=-1) + 1
    cells: list[Any] = [None] * width
    for key, cell in value.items():
        cells[int(key)] = cell
    return cells


def _validate_rows(entries: list[tuple[Path, list[Any], list[int]]]) -> None:
    """pandera over the rows of every table read, in one pass; the first bad row is the error."""
    rows = [row for _, values, _ in entries for row in values]
    if not rows:
        return
    where = [(path, number) for path, _, numbers in entries for number in numbers]
    try:
        _ROW_SCHEMA.validate(pd.DataFrame({"row": pd.Series(rows, dtype=object)}), lazy=True)
    except pa.errors.SchemaErrors as errors:
        failures = errors.failure_cases.dropna(subset=["index"])
        index = int(failures["index"].min())
        path, number = where[index]
        raise InputError(f"{path}:{number}: {failures.iloc[0]['check']}") from None


# ----------------------------------------------------------------------------------------------------------------
# The loader
# ----------------------------------------------------------------------------------------------------------------

def _find(root: Path, name: str) -> Path | None:
    """``root/name`` or ``root/<subdir>/name`` (sub-directories in name order), or None."""
    direct = root / name
    if direct.is_file():
        return direct
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        candidate = sub / name
        if candidate.is_file():
            return candidate
    return None


def _rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"aegir.tables.sotab:{seed}:{name}".encode()).hexdigest()


class _TableIndex:
    """Table file lookup by name over a few directories, each listed once."""

    def __init__(self) -> None:
        self._listing: dict[Path, dict[str, Path]] = {}

    def find(self, name: str, directories: Sequence[Path]) -> Path | None:
        for directory in directories:
            if directory not in self._listing:
                self._listing[directory] = ({p.name: p for p in directory.iterdir() if p.is_file()}
                                            if directory.is_dir() else {})
            if name in self._listing[directory]:
                return self._listing[directory][name]
        return None


def load_sotab(root: Path | str, kind: Kind, *, max_rows: int | None = 20, max_tables: int | None = None,
               seed: int = 0, train_set: str = "training", test_set: str = "test",
               carve: Sequence[str] = ()) -> TableCorpus:
    """Load the SOTAB v2 tables and ``kind`` ground truth under ``root`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory (task.data.root must point at the unpacked SOTAB v2 files)")
    if train_set not in TRAIN_SETS:
        raise InputError(f"task.data.sotab_train_set: must be one of {', '.join(TRAIN_SETS)}, got {train_set!r}")
    if test_set not in TEST_SETS:
        raise InputError(f"task.data.sotab_test_set: must be one of {', '.join(TEST_SETS)}, got {test_set!r}")
    variants: dict[Split, str | None] = {"train": train_set, "val": None, "test": test_set}
    bad_carve = [split for split in carve if split not in ("val", "test")]
    if bad_carve:
        raise InputError(f"task.data.sotab_carve: splits to carve out of training are val and/or test, "
                         f"got {list(carve)!r}")
    gt_files: dict[Split, Path] = {}
    for split in SPLITS:
        if split in carve:
            continue
        name = ground_truth_name(kind, split, variants[split])
        found = _find(root, name)
        if found is None:
            hint = "" if split == "train" else (f"; to carve the {'validation' if split == 'val' else 'test'} split "
                                                f"out of the training tables instead, set "
                                                f"task.data.sotab_carve=[{split}]")
            raise InputError(f"{root}: no {name} (looked in {root} and its sub-directories){hint}")
        gt_files[split] = found

    digest = hashlib.sha256()
    annotations: dict[Split, list[GroundTruthRecord]] = {}
    for split, path in gt_files.items():
        annotations[split] = read_ground_truth(path, kind)
        digest.update(f"{path.name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())

    owner: dict[str, tuple[Split, GroundTruthRecord]] = {}
    chosen: dict[Split, set[str]] = {}
    for split in SPLITS:
        for annotation in annotations.get(split, []):
            first = owner.setdefault(annotation.table, (split, annotation))
            if first[0] != split:
                raise InputError(f"{annotation.source}:{annotation.line}: table {annotation.table} is also "
                                 f"annotated in {first[1].source.name} (line {first[1].line}); splits must not "
                                 f"share tables")
        names = sorted({annotation.table for annotation in annotations.get(split, [])})
        if max_tables is not None and len(names) > max_tables:
            names = sorted(sorted(names, key=lambda name: _rank(seed, name))[:max_tables])
        chosen[split] = set(names)

    index = _TableIndex()
    tables: dict[str, Table] = {}
    entries: list[tuple[Path, list[Any], list[int]]] = []
    paths: dict[str, Path] = {}
    for split, split_annotations in annotations.items():
        gt_dir = gt_files[split].parent
        directories = list(dict.fromkeys([gt_dir / SPLIT_DIRS[split], root / SPLIT_DIRS[split], gt_dir, root]))
        for annotation in split_annotations:
            if annotation.table not in chosen[split] or annotation.table in paths:
                continue
            path = index.find(annotation.table, directories)
            if path is None:
                shown = ", ".join(str(d) for d in directories if d.is_dir()) or str(root)
                raise InputError(f"{annotation.source}:{annotation.line}: unknown table {annotation.table}: no such "
                                 f"file in {shown}")
            paths[annotation.table] = path
    for name in sorted(paths):
        data = paths[name].read_bytes()
        digest.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        values, numbers = _read_table_lines(paths[name], data, max_rows)
        entries.append((paths[name], values, numbers))
    _validate_rows(entries)
    for path, values, _ in entries:
        tables[path.name] = Table.from_rows(path.name, [_cells(value) for value in values])

    cta: list[ColumnLabel] = []
    cpa: list[PairLabel] = []
    official: dict[str, Split] = {}
    for split, split_annotations in annotations.items():
        for annotation in split_annotations:
            table = tables.get(annotation.table)
            if table is None:
                continue  # not among the max_tables chosen
            for role, column in (("column_index", annotation.column), ("main_column_index", annotation.main_column)):
                if column is not None and column >= table.n_columns:
                    read = f" in its first {max_rows} rows" if max_rows is not None else ""
                    raise InputError(f"{annotation.source}:{annotation.line}: {role} {column} out of range: table "
                                     f"{annotation.table} has {table.n_columns} columns{read}")
            official[annotation.table] = split
            if kind == "cta":
                cta.append(ColumnLabel(annotation.table, annotation.column, annotation.label))
            else:
                cpa.append(PairLabel(annotation.table, int(annotation.main_column or 0), annotation.column,
                                     annotation.label))
    vocabulary = {kind: sorted({a.label for split_annotations in annotations.values() for a in split_annotations})}
    return TableCorpus("sotab", tables, cta, cpa, official, digest.hexdigest(), vocabulary)


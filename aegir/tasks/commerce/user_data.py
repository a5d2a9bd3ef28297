"""The user's own commerce data instead of the generated world: chat-style JSONL records and a SQLite database.

Records file (``.jsonl``, one JSON object a line, blank lines skipped)::

    {"id": "r1", "task": "sql_qa", "prompt": [{"role": "system", "content": "..."}, {"role": "user", ...}],
     "reference": "...", "gold_sql": "...", "answer": 42}

* ``task`` -- one of ``extraction``, ``sql_qa``, ``insights``, ``push``;
* ``prompt`` -- a non-empty list of ``{"role", "content"}`` messages, roles ``system``/``user``/``assistant``,
  content a non-empty string;
* ``reference`` -- optional, a string (the SFT target);
* ``id`` -- optional, a unique non-empty string (default ``line-<n>``: the split is by id);
* task fields as in :mod:`aegir.tasks.commerce.pairs` (``fields``; ``gold_sql``/``answer``/``db_path``;
  ``entities``/``numbers``/``tolerance``; ``constraints``): checked when present, required with
  ``require_task_fields=True`` (GRPO cannot score a record without them).

Rows are normalised into a DataFrame (one column per field, None where absent) and validated with a pandera
schema in one pass; the first problem (lowest line, then schema order) becomes an ``InputError`` naming the file,
the 1-based line and what is wrong. Every other field of a record is kept as is.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from aegir.errors import InputError
from aegir.tasks.data_files import parse_json_line, regular_file
from aegir.tasks.commerce.pairs import TASKS
from aegir.tasks.commerce.world import TABLE_COLUMNS, open_readonly

ROLES: tuple[str, ...] = ("system", "user", "assistant")
SQLITE_HEADER = b"SQLite format 3\x00"
_TASK_FIELD_COLUMNS: tuple[str, ...] = ("fields", "gold_sql", "answer", "db_path", "entities", "numbers",
                                        "tolerance", "constraints")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid_prompt(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(
        isinstance(message, dict) and message.get("role") in ROLES and _is_text(message.get("content"))
        for message in value))


def _valid_constraints(value: Any) -> bool:
    return (isinstance(value, dict)
            and isinstance(value.get("max_chars"), int) and not isinstance(value["max_chars"], bool)
            and value["max_chars"] > 0
            and isinstance(value.get("must_mention"), list) and all(_is_text(item) for item in value["must_mention"])
            and (value.get("discount_pct") is None
                 or (isinstance(value["discount_pct"], int) and not isinstance(value["discount_pct"], bool)
                     and 0 < value["discount_pct"] < 100))
            and isinstance(value.get("cta"), bool))


def _task_fields_check(task: str, row_ok: Callable[[pd.Series], bool], error: str) -> pa.Check:
    """A row-wise check that applies only to rows of `task` (other rows pass)."""
    return pa.Check(lambda frame: (frame["task"] != task) | frame.apply(row_ok, axis=1), error=error)


def _schema(require_task_fields: bool) -> pa.DataFrameSchema:
    def optional(predicate: Callable[[Any], bool]) -> Callable[[Any], bool]:
        return lambda value: value is None or predicate(value)

    present = (lambda predicate: predicate) if require_task_fields else optional
    element = lambda predicate, error: pa.Check(predicate, element_wise=True, error=error)  # noqa: E731
    return pa.DataFrameSchema(
        {
            "id": pa.Column(None, element(_is_text, "id must be a non-empty string")),
            "task": pa.Column(None, element(lambda value: value in TASKS,
                                            f"task must be one of {', '.join(TASKS)}")),
            "prompt": pa.Column(None, element(_valid_prompt, "prompt must be a non-empty list of {role, content} "
                                              f"messages with role in {', '.join(ROLES)} and non-empty content")),
            "reference": pa.Column(None, element(optional(lambda value: isinstance(value, str)),
                                                 "reference must be a string"), nullable=True),
        },
        checks=[
            pa.Check(lambda frame: ~frame["id"].map(repr).duplicated(), error="duplicate id (ids must be unique)"),
            _task_fields_check("extraction", lambda row: present(
                lambda value: isinstance(value, dict) and bool(value) and all(_is_text(key) for key in value))(
                row["fields"]), "extraction record needs 'fields': a non-empty object of name -> value"),
            _task_fields_check("sql_qa", lambda row: (
                optional(_is_text)(row["gold_sql"]) and optional(lambda v: _is_number(v) or isinstance(v, str))(
                    row["answer"]) and (not require_task_fields or row["gold_sql"] is not None
                                        or row["answer"] is not None)),
                "sql_qa record needs 'gold_sql' (a string) or 'answer' (a number or string)"),
            _task_fields_check("insights", lambda row: (
                present(lambda v: isinstance(v, list) and all(_is_text(item) for item in v))(row["entities"])
                and present(lambda v: isinstance(v, list) and all(_is_number(item) for item in v))(row["numbers"])
                and optional(lambda v: _is_number(v) and v >= 0)(row["tolerance"])),
                "insights record needs 'entities' (list of strings), 'numbers' (list of numbers) and an optional "
                "'tolerance' >= 0"),
            _task_fields_check("push", lambda row: present(_valid_constraints)(row["constraints"]),
                               "push record needs 'constraints': {max_chars: int > 0, must_mention: [str], "
                               "discount_pct: int in 1..99 or null, cta: bool}"),
        ],
    )


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The objects of a JSONL file and their 1-based line numbers; malformed lines are errors here already."""
    records, lines = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json_line(line, f"{path}:{number}")
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
        lines.append(number)
    if not records:
        raise InputError(f"{path}: no records (the file is empty)")
    return records, lines


def load_user_pairs(path: Path | str, *, require_task_fields: bool = False) -> list[dict[str, Any]]:
    """The records of a chat-style JSONL file, validated; a missing ``id`` becomes ``line-<n>``."""
    return read_user_pairs(path, require_task_fields=require_task_fields)[0]


def read_user_pairs(path: Path | str, *, require_task_fields: bool = False) -> tuple[list[dict[str, Any]], list[int]]:
    """:func:`load_user_pairs` and the 1-based line of each record (for errors found later, e.g. by the rewards)."""
    path = regular_file(path)
    records, lines = _read_jsonl(path)
    for record, line in zip(records, lines):
        record.setdefault("id", f"line-{line}")
    columns = ["id", "task", "prompt", "reference", *_TASK_FIELD_COLUMNS]
    frame = pd.DataFrame({column: pd.Series([record.get(column) for record in records], dtype=object)
                          for column in columns})
    schema = _schema(require_task_fields)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise InputError(_first_problem(path, errors.failure_cases, lines, schema)) from None
    return records, lines


def _first_problem(path: Path, failures: pd.DataFrame, lines: list[int], schema: pa.DataFrameSchema) -> str:
    """One line for the earliest failing row; among its failures, the first in schema order."""
    order = [check.error for column in schema.columns.values() for check in column.checks]
    order += [check.error for check in schema.checks]
    failures = failures.dropna(subset=["index"])
    if failures.empty:  # a schema-level failure without a row (should not happen with these checks)
        return f"{path}: invalid records"
    ranked = failures.assign(rank=failures["check"].map(lambda name: order.index(name) if name in order else 99))
    first = ranked.sort_values(["index", "rank"], kind="stable").iloc[0]
    return f"{path}:{lines[int(first['index'])]}: {first['check']}"


def check_user_db(path: Path | str) -> dict[str, int]:
    """Check a user database has the world's tables and columns; returns row counts per table.

    Checks, in order: the file exists, starts with the SQLite header, opens, and has every table of
    ``TABLE_COLUMNS`` (all missing ones listed) with at least those columns.
    """
    path = regular_file(path, "database file")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise InputError(f"{path}: not an SQLite database (the file does not start with the SQLite header)")
    try:
        connection = open_readonly(path)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [table for table in TABLE_COLUMNS if table not in tables]
            if missing:
                raise InputError(f"{path}: missing tables: {', '.join(missing)} "
                                 f"(expected: {', '.join(TABLE_COLUMNS)})")
            counts = {}
            for table, expected in TABLE_COLUMNS.items():
                present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                absent = [column for column in expected if column not in present]
                if absent:
                    raise InputError(f"{path}: table {table} lacks columns: {', '.join(absent)}")
                counts[table] = connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            return counts
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise InputError(f"{path}: unreadable SQLite database ({error})") from None

"""The in-memory web-table corpus shared by the synthetic generator and the SOTAB loader.

Both sources produce a :class:`TableCorpus`, so everything downstream (similarity, MMR, serialization, the
dataset) is written once:

* :class:`Table` -- one table, column-major, cells as text (``None`` = missing), optional header names
  (SOTAB tables have none; generated tables carry their Schema.org property path, e.g. ``offers.price``).
* :class:`ColumnLabel` -- CTA ground truth: ``(table, column, label)``, label a Schema.org type such as
  ``Product/name`` or ``telephone``.
* :class:`PairLabel` -- CPA ground truth: ``(table, main_column, column, label)``, label the Schema.org
  property linking the table's main (subject) column to ``column``, such as ``priceCurrency``.

Table names follow SOTAB's convention ``<Topic>_<site>_<suffix>``: the part before the first ``_`` is the
entity type the table describes (``Product``, ``Event``, ...), which the dataset uses to stratify its splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["cta", "cpa"]
KINDS: tuple[Kind, ...] = ("cta", "cpa")
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

Cell = str | None


def normalize_cell(value: object) -> Cell:
    """Text of one cell: whitespace runs collapsed to one space, empty -> ``None`` (missing).

    Web tables carry HTML-extracted text with newlines and tabs; collapsing them keeps the byte budget for
    content and keeps the serialized ``|`` / ``[SEP]`` structure readable. Non-string JSON values (numbers,
    booleans, lists, objects) are written as compact JSON.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text or None


@dataclass(frozen=True)
class Table:
    """One web table: ``columns[c][r]`` is the cell of row ``r`` in column ``c`` (text, or ``None`` if missing)."""

    name: str
    columns: tuple[tuple[Cell, ...], ...]
    headers: tuple[str, ...] | None = None
    # Per-(column, value_bytes) encoded values, filled lazily by serialize.column_values (not part of equality).
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.headers is not None and len(self.headers) != len(self.columns):
            raise ValueError(f"table {self.name}: {len(self.headers)} headers for {len(self.columns)} columns")

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def n_rows(self) -> int:
        return max((len(column) for column in self.columns), default=0)

    @property
    def topic(self) -> str:
        """The entity type of the table (``Product`` for ``Product_shop.example_0001``)."""
        return self.name.split("_", 1)[0]

    def head(self, max_rows: int | None) -> "Table":
        """The first ``max_rows`` rows (the table itself when it is not longer)."""
        if max_rows is None or self.n_rows <= max_rows:
            return self
        return Table(self.name, tuple(column[:max_rows] for column in self.columns), self.headers)

    def non_empty(self, column: int) -> bool:
        """Whether the column has at least one non-missing cell."""
        return any(cell is not None for cell in self.columns[column])

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[Sequence[object]], headers: Sequence[str] | None = None
                  ) -> "Table":
        """Build from row-major cells (ragged rows are padded with missing cells)."""
        width = max((len(row) for row in rows), default=0)
        if headers is not None:
            width = max(width, len(headers))
        columns = tuple(
            tuple(normalize_cell(row[c]) if c < len(row) else None for row in rows) for c in range(width)
        )
        return cls(name, columns, tuple(headers) if headers is not None else None)


@dataclass(frozen=True)
class ColumnLabel:
    """CTA ground truth: the Schema.org type of one column."""

    table: str
    column: int
    label: str


@dataclass(frozen=True)
class PairLabel:
    """CPA ground truth: the property linking the main column of a table to another column."""

    table: str
    main_column: int
    column: int
    label: str


@dataclass
class TableCorpus:
    """Tables plus their CTA and CPA ground truth, as produced by a source (generator or loader).

    ``official_split`` maps table name -> ``train``/``val``/``test`` when the source ships fixed splits (SOTAB's
    training/validation/test files); it is empty for the generator, whose split the dataset draws from
    ``data_seed``. ``sha256`` identifies the source data (generated content, or the bytes of the files read).
    """

    source: str
    tables: dict[str, Table]
    cta: list[ColumnLabel] = field(default_factory=list)
    cpa: list[PairLabel] = field(default_factory=list)
    official_split: dict[str, Split] = field(default_factory=dict)
    sha256: str = ""
    vocabulary: dict[str, list[str]] = field(default_factory=dict)  # kind -> all labels of the source's files

    def labels(self, kind: Kind) -> list[ColumnLabel] | list[PairLabel]:
        return self.cta if kind == "cta" else self.cpa

    def label_vocabulary(self, kind: Kind) -> list[str]:
        """Sorted distinct labels of one kind: a stable label -> index map across runs and machines.

        A loader that keeps only some tables records the labels of all its ground-truth rows in ``vocabulary``,
        so the map does not change with the subset.
        """
        if kind in self.vocabulary:
            return sorted(self.vocabulary[kind])
        return sorted({annotation.label for annotation in self.labels(kind)})


def corpus_content_sha256(tables: Iterable[Table], cta: Iterable[ColumnLabel], cpa: Iterable[PairLabel]) -> str:
    """Hash of the corpus content in a canonical form (tables in name order, cells, headers, labels).

    Used for generated corpora, which have no files; two corpora hash equal exactly when they hold the same
    tables and ground truth.
    """
    digest = hashlib.sha256()
    for table in sorted(tables, key=lambda t: t.name):
        record = {"name": table.name, "headers": table.headers, "columns": table.columns}
        digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    for annotation in sorted(cta, key=lambda a: (a.table, a.column)):
        digest.update(f"cta\t{annotation.table}\t{annotation.column}\t{annotation.label}\n".encode("utf-8"))
    for pair in sorted(cpa, key=lambda a: (a.table, a.main_column, a.column)):
        digest.update(f"cpa\t{pair.table}\t{pair.main_column}\t{pair.column}\t{pair.label}\n".encode("utf-8"))
    return digest.hexdigest()

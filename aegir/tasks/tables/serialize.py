"""A column with its table context, as byte-level token ids under per-column and total budgets.

Format (CTA)::

    [CLS] target: v1 | v2 | v3 [SEP] context: v1 | v2 [SEP] context: ... [SEP]

Format (CPA, the pair's object column first, then the table's main/subject column)::

    [CLS] target: v1 | v2 [SEP] main: v1 | v2 [SEP] context: ... [SEP]

``[CLS]``/``[SEP]`` are the tokenizer's special ids (``CLS_ID``, ``SEP_ID``), never bytes of text, so no cell
value can forge them. Everything else is UTF-8 bytes.

Role markers: SOTAB tables have no headers, and positional names (``col3``) would
invent structure, so a column is introduced by its *role* -- ``target:``, ``main:`` or ``context:`` -- in
plain bytes the model reads like any text. With ``include_headers=True`` and a table that has headers (the
generated ones do), the header follows the role: ``target [offers.price]: 12.99 | ...``.

Values: missing cells are skipped; each value is cut to ``value_bytes``; values are joined with `` | ``.

Budgets, in ids (one id per byte, one per special token):

* a column's segment -- its marker plus its values, the ``[SEP]`` after it excluded -- never exceeds its budget:
  ``target_bytes`` for the target (and for the CPA main column), ``per_column_bytes`` for a context column;
* the whole sequence, ``[CLS]`` and every ``[SEP]`` included, never exceeds ``total_bytes``.

Truncation happens at value boundaries: a value that does not fit ends the column. Only when not even the first
value fits is it cut (at a UTF-8 character boundary), so every included column shows some content. Columns are
added in the given order (target, main, then context in MMR order); a context column is dropped whole when the
total budget no longer leaves room for its marker, one byte of content and its ``[SEP]``. The target column is
always present, and so is the CPA main column: room for its marker, one byte and its ``[SEP]`` is kept back
while the target is filled (the budget validation guarantees both fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from aegir.tasks.tables.table import Table
from aegir.tokenizer import CLS_ID, SEP_ID, ByteTokenizer

Role = Literal["target", "main", "context"]
ROLES: tuple[Role, ...] = ("target", "main", "context")
VALUE_SEPARATOR = b" | "
_TOKENIZER = ByteTokenizer()
MIN_TOTAL_BYTES = 1 + len(b"target: ") + 1 + 1 + len(b"main: ") + 1 + 1
"""The smallest total budget that always fits a CPA example's target and main columns with one byte each."""


@dataclass(frozen=True)
class SerializeBudget:
    """Byte budgets of one serialized example (see the module docstring for what each counts)."""

    target_bytes: int = 160
    per_column_bytes: int = 48
    total_bytes: int = 512
    value_bytes: int = 64
    include_headers: bool = False

    def problems(self) -> list[str]:
        """What is wrong with these budgets, as ``key: reason`` strings (empty when they are usable)."""
        out = []
        for name in ("target_bytes", "per_column_bytes", "total_bytes", "value_bytes"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        smallest_target = len(marker("target")) + 1
        if self.target_bytes < smallest_target:
            out.append(f"target_bytes: must be >= {smallest_target} (marker 'target: ' plus one byte), "
                       f"got {self.target_bytes}")
        if self.total_bytes < MIN_TOTAL_BYTES:
            out.append(f"total_bytes: must be >= {MIN_TOTAL_BYTES} ([CLS], target and main markers with one byte "
                       f"each, two [SEP]), got {self.total_bytes}")
        return out


@dataclass(frozen=True)
class ColumnSpan:
    """Where one column's segment (marker + values, without the [SEP]) lies in ``ids``: ``ids[start:end]``."""

    column: int
    role: Role
    start: int
    end: int


@dataclass(frozen=True)
class SerializedColumn:
    """Token ids of one example, and where each column went."""

    ids: list[int]
    spans: tuple[ColumnSpan, ...]

    @property
    def text(self) -> str:
        """Readable form (``<|cls|>target: ...<|sep|>...``) for samples and debugging."""
        return render(self.ids)


def render(ids: Sequence[int]) -> str:
    """Readable form of serialized ids, special tokens shown as ``<|cls|>`` and ``<|sep|>``."""
    return _TOKENIZER.decode(ids, skip_special=False)


@lru_cache(maxsize=4096)
def marker(role: Role, header: str | None = None) -> bytes:
    """The bytes that introduce a column: ``target: `` or, with a header, ``target [price]: ``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if header:
        return f"{role} [{' '.join(header.split())}]: ".encode("utf-8")
    return f"{role}: ".encode("utf-8")


def utf8_prefix(data: bytes, limit: int) -> bytes:
    """The longest prefix of ``data`` of at most ``limit`` bytes that does not split a UTF-8 character."""
    if len(data) <= limit:
        return data
    if limit <= 0:
        return b""
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:  # data[end] continues a character: back off to its start
        end -= 1
    return data[:end]


@lru_cache(maxsize=64)
def _budget_problems(budget: SerializeBudget) -> tuple[str, ...]:
    return tuple(budget.problems())


def column_values(table: Table, column: int, value_bytes: int) -> tuple[bytes, ...]:
    """The encoded non-missing values of a column, each cut to ``value_bytes`` (cached on the table)."""
    key = (column, value_bytes)
    cached = table._cache.get(key)
    if cached is None:
        cached = tuple(utf8_prefix(cell.encode("utf-8"), value_bytes)
                       for cell in table.columns[column] if cell is not None)
        table._cache[key] = cached
    return cached


def _body(values: Sequence[bytes], cap: int) -> bytes:
    """Values joined by `` | `` within ``cap`` bytes, stopping at a value boundary (see module docstring)."""
    out = bytearray()
    for value in values:
        if not value:
            continue
        piece = VALUE_SEPARATOR + value if out else value
        if len(out) + len(piece) <= cap:
            out += piece
            continue
        if not out:
            out += utf8_prefix(value, cap)
        break
    return bytes(out)


def serialize_column(table: Table, target: int, context: Sequence[int] = (),
                     budget: SerializeBudget = SerializeBudget(), main: int | None = None) -> SerializedColumn:
    """Serialize column ``target`` of ``table`` with the ``main`` column (CPA) and ``context`` columns.

    ``context`` is taken in the given order (MMR order from :func:`aegir.tasks.tables.mmr.select_context_columns`);
    columns equal to ``target`` or ``main`` are ignored. Raises ``ValueError`` for unusable budgets or a
    column index outside the table.
    """
    problems = _budget_problems(budget)
    if problems:
        raise ValueError("; ".join(problems))
    n = table.n_columns
    wanted = [target] + ([main] if main is not None else []) + list(context)
    for column in wanted:
        if not 0 <= column < n:
            raise ValueError(f"column {column} outside table {table.name} with {n} columns")
    headers = table.headers if budget.include_headers else None
    plan: list[tuple[int, Role, int]] = [(target, "target", budget.target_bytes)]
    if main is not None and main != target:
        plan.append((main, "main", budget.target_bytes))
    seen = {column for column, _, _ in plan}
    for column in context:
        if column not in seen:
            seen.add(column)
            plan.append((column, "context", budget.per_column_bytes))

    ids: list[int] = [CLS_ID]
    spans: list[ColumnSpan] = []
    # Room kept back for the minimal segments still owed after the target: the CPA main column's.
    owed = len(marker("main")) + 2 if len(plan) > 1 and plan[1][1] == "main" else 0
    for column, role, column_budget in plan:
        head = marker(role, headers[column] if headers else None)
        if role == "main":
            owed = 0
        room = min(column_budget, budget.total_bytes - len(ids) - 1 - owed)  # - 1: the [SEP] closing the segment
        if room < len(head) + 1:
            if role == "context":
                break
            head = marker(role)  # a long header must not crowd out a mandatory column's content
        body = _body(column_values(table, column, budget.value_bytes), room - len(head))
        start = len(ids)
        ids.extend(head)
        ids.extend(body)
        spans.append(ColumnSpan(column, role, start, len(ids)))
        ids.append(SEP_ID)
    return SerializedColumn(ids, tuple(spans))

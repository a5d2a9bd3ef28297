"""Run one untrusted, model-written SQL query against a SQLite file without letting it change anything.

The ``sql_qa`` verifiers execute whatever SQL the policy wrote, so :func:`run_query` treats the text as hostile and
stacks independent defences, each of which alone would stop a write:

1. **Text gate** (:func:`single_select`): no NUL bytes, valid UTF-8, at most :data:`MAX_SQL_CHARS` characters,
   exactly *one* statement (a tokenizer-aware scan that knows SQL strings, quoted identifiers and comments, so a
   ``;`` inside ``'a;b'`` is not a separator and ``SELECT 1; DROP TABLE t`` is refused), whose first keyword is
   ``SELECT`` or ``WITH``, no two-argument ``trim``/``ltrim``/``rtrim`` (quadratic C loop), and no common-table-
   expression amplification: SQLite copies a non-materialised CTE's parse tree into every place that reads it,
   so ten CTEs each reading the previous one three times make 3^9 copies and minutes of statement preparation.
   :func:`expanded_size` counts the tokens of the statement with every CTE reference replaced by the CTE's body
   (recursively); more than :data:`MAX_EXPANDED_TOKENS` is refused before SQLite sees the text. The gate's own
   work is linear in the text: parentheses nested deeper than :data:`MAX_PAREN_DEPTH` (SQLite's parser overflows
   there anyway) and more than :data:`MAX_CTES` CTEs are refused. Only that statement's text is handed to SQLite;
   ``sqlite3.complete_statement`` must agree it is closed.
2. **Read-only connection**: ``file:...?mode=ro`` (SQLite opens the file read-only and never creates it), plus
   ``PRAGMA query_only=ON``, ``PRAGMA trusted_schema=OFF`` and ``enable_load_extension(False)``.
3. **Authorizer** (allow-list): only SELECT, column/table READs, recursive CTEs and the functions in
   :data:`ALLOWED_FUNCTIONS` are authorised. ATTACH/DETACH, every write or DDL (``WITH ... INSERT`` included),
   PRAGMA, transactions, and functions such as ``load_extension``, ``fts3_tokenizer`` or ``random`` are denied
   while the statement is *prepared*, before anything runs. The same callback records the tables the query reads
   (:attr:`QueryResult.tables`, used by the "right tables" reward tier).
4. **Limits**: ``SQLITE_LIMIT_ATTACHED=0`` (no ATTACH even if the authorizer were bypassed),
   ``SQLITE_LIMIT_LENGTH`` = :data:`MAX_VALUE_BYTES` caps any string, blob or row (``zeroblob(1e9)`` fails with
   "too big" instead of allocating a gigabyte, and it bounds what one call of ``instr``/``replace``/``LIKE`` can
   cost: O(length²) on 20 kB is milliseconds), ``SQLITE_LIMIT_VDBE_OP`` caps the size of the compiled program,
   plus caps on SQL length, columns, expression depth, LIKE/GLOB pattern length and compound SELECTs.
5. **Time budget**, covering preparation as well as execution: the progress handler aborts the statement once
   ``timeout_s`` has passed (checked every :data:`PROGRESS_OPCODES` VDBE instructions, i.e. while it steps and
   fetches rows). SQLite never calls the progress handler while it *prepares* a statement, so the authorizer, which
   SQLite calls for every table and column reference it resolves during preparation, checks the same deadline and
   denies the next reference once it has passed (preparation then fails as "timeout").
6. **Memory and temporary storage**: ``PRAGMA temp_store=MEMORY`` (sorters and temporary b-trees never write temp
   files: ``ORDER BY`` over large rows used to write ~1 GB of temp files a second), and the same two callbacks
   abort the statement once SQLite's heap has grown :data:`MAX_QUERY_MEMORY_BYTES` above what it was when the
   query started (``sqlite3_memory_used``, read through ctypes from the SQLite library Python's ``sqlite3`` uses;
   where that symbol cannot be found the check is skipped, :data:`MEMORY_CHECK_AVAILABLE`).
7. **Result caps**: at most ``max_rows`` rows (one more is fetched to set ``truncated``) and at most
   ``max_result_bytes`` of cell data.

:func:`run_query` never raises on any input: every failure is a :class:`QueryResult` with ``ok=False`` and an
``error`` string.

Limitations (not closed here): the time and memory checks run *between* steps of SQLite's work, so one long
C-level operation overruns them: the known offenders are refused (printf/format width loops, two-argument trim,
CTE amplification) or bounded by the size limits above, but an unknown one in SQLite's C code would run to
completion, and SQLite's heap counter is process-wide (another thread using SQLite at the same time counts too).
The hard guarantees come from the reward composer's worker processes (``reward.workers``: ``auto``, the default of
the rewards that run model-written SQL, starts them): a call still running at its hard deadline has its process
killed, and each worker runs under an address-space limit (``reward.memory_mb``). A database in WAL mode may need
its ``-shm`` file; the task databases use rollback journals.
"""

from __future__ import annotations

import bisect
import ctypes
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_SQL_CHARS = 20_000
"""Longest SQL text accepted (also SQLite's ``SQLITE_LIMIT_SQL_LENGTH`` for the connection, in bytes)."""
MAX_VALUE_BYTES = 20_000
"""``SQLITE_LIMIT_LENGTH``: the largest string, blob or row any expression may build. It bounds the C loops the
progress handler cannot interrupt: ``instr``/``replace`` of two such strings or a 200-character LIKE pattern over
one take milliseconds (at 100 kB, 0.1-0.3 s per call made a query overrun its budget by 10-30 s)."""
MAX_RESULT_BYTES = 8_000_000
"""Default cap on the summed size of the returned cells; more sets ``truncated``."""
PROGRESS_OPCODES = 100
"""The deadline and memory are checked every this many VDBE instructions (a few microseconds of work)."""
MAX_VDBE_OPS = 50_000
"""``SQLITE_LIMIT_VDBE_OP``: the longest compiled program (real queries compile to a few hundred instructions)."""
MAX_EXPANDED_TOKENS = 100_000
"""Longest statement, in tokens, once every CTE reference is replaced by the CTE's body (:func:`expanded_size`)."""
MAX_CTES = 100
"""Most common table expressions one statement may define (keeps the text gate's own work linear)."""
MAX_PAREN_DEPTH = 100
"""Deepest parenthesis nesting the text gate accepts (SQLite's parser stack holds about 100 levels anyway)."""
MAX_QUERY_MEMORY_BYTES = 64 * 2**20
"""How much SQLite's heap may grow while one query runs (sorters, temp b-trees, parse trees)."""

_LIMITS: tuple[tuple[int, int], ...] = (
    (sqlite3.SQLITE_LIMIT_ATTACHED, 0),
    (sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES),
    (sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS),  # bytes: 4 per character covers any UTF-8 text
    (sqlite3.SQLITE_LIMIT_COLUMN, 256),
    (sqlite3.SQLITE_LIMIT_EXPR_DEPTH, 200),
    (sqlite3.SQLITE_LIMIT_COMPOUND_SELECT, 100),
    (sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 200),
    (sqlite3.SQLITE_LIMIT_VDBE_OP, MAX_VDBE_OPS),
    (sqlite3.SQLITE_LIMIT_FUNCTION_ARG, 32),
    (sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 0),  # no bound parameters: we never pass any
    (sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH, 1),
)

ALLOWED_FUNCTIONS: frozenset[str] = frozenset({
    # core scalar
    "abs", "char", "coalesce", "glob", "hex", "ifnull", "iif", "instr", "length", "like", "likelihood",
    "likely", "lower", "ltrim", "max", "min", "nullif", "quote", "replace", "round", "rtrim", "sign", "soundex",
    "substr", "substring", "trim", "typeof", "unicode", "unlikely", "upper", "zeroblob", "subtype",
    "sqlite_version", "sqlite_source_id", "changes", "total_changes", "last_insert_rowid",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh", "degrees", "exp",
    "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sin", "sinh", "sqrt", "tan",
    "tanh", "trunc",
    # date and time
    "date", "time", "datetime", "julianday", "strftime", "unixepoch", "current_date", "current_time",
    "current_timestamp",
    # aggregate and window
    "avg", "count", "group_concat", "sum", "total", "cume_dist", "dense_rank", "first_value", "lag", "last_value",
    "lead", "nth_value", "ntile", "percent_rank", "rank", "row_number",
    # JSON
    "json", "json_array", "json_array_length", "json_extract", "json_group_array", "json_group_object",
    "json_insert", "json_object", "json_patch", "json_quote", "json_remove", "json_replace", "json_set",
    "json_type", "json_valid", "->", "->>",
})
"""Functions a query may call. Left out on purpose: load_extension, fts3_tokenizer (pointer tricks), the FTS/R-tree
internals, sqlite_log and sqlite_compileoption_*, random/randomblob (a non-deterministic result cannot be compared
with the gold one), and printf/format: ``printf('%.*c', 1e9, 'x')`` loops a billion times inside one C call
(~9 s) where neither the length limit nor the progress handler can stop it."""

_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})


def _memory_used_function() -> Any:
    """``sqlite3_memory_used`` of the SQLite library the ``sqlite3`` module is linked to, or None.

    dlsym on the ``_sqlite3`` extension's own handle searches its dependencies, so this finds the library actually
    in use (a system ``libsqlite3`` or one linked into the extension), not some other copy on the system.
    """
    try:
        import _sqlite3

        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (ImportError, OSError, AttributeError):
        return None
    function.restype = ctypes.c_int64
    function.argtypes = []
    return function


_memory_used = _memory_used_function()
MEMORY_CHECK_AVAILABLE = _memory_used is not None
"""Whether :data:`MAX_QUERY_MEMORY_BYTES` is enforced (SQLite's heap counter could be read)."""


@dataclass(frozen=True)
class QueryResult:
    """Outcome of :func:`run_query`; ``ok`` False means ``error`` says why and ``rows``/``columns`` are None."""

    ok: bool
    rows: list[tuple[Any, ...]] | None = None
    columns: list[str] | None = None
    error: str | None = None
    truncated: bool = False
    tables: frozenset[str] = field(default_factory=frozenset)
    """Lower-cased names of the database tables and views the statement reads (a view also contributes the tables
    it reads), known once it prepared, even if it then failed or timed out; CTE names and SQLite's internal tables
    are not included."""
    elapsed_s: float = 0.0


class _Refused(Exception):
    """The SQL text was refused before reaching SQLite."""


# ----------------------------------------------------------------------------------------------------------------
# Text gate: exactly one SELECT/WITH statement
# ----------------------------------------------------------------------------------------------------------------


def _tokens(sql: str) -> Iterator[tuple[str, str, int]]:
    """SQLite-aware lexer for the text gate: yields (kind, value, start) with kind "word" (bare or quoted identifier or
    keyword, lower-cased, quotes removed), "string", "punct" (one character) or "other" (numbers, ...).

    It knows every lexical form that can hide a ';' or a name: '...' strings, "..." / `...` / [...] identifiers
    (a doubled quote escapes itself), -- line comments and /* block */ comments (SQLite accepts an unterminated
    block comment at the end). Raises _Refused on an unterminated literal.
    """
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"`":
            end = _skip_quoted(sql, i, ch)
            inner = sql[i + 1:end - 1].replace(ch * 2, ch)
            yield ("string", inner, i) if ch == "'" else ("word", inner.lower(), i)
            i = end
        elif ch == "[":
            end = sql.find("]", i + 1)
            if end < 0:
                raise _Refused("unterminated [identifier]")
            yield "word", sql[i + 1:end].lower(), i
            i = end + 1
        elif ch.isalpha() or ch == "_" or ord(ch) > 127:
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$" or ord(sql[j]) > 127):
                j += 1
            yield "word", sql[i:j].lower(), i
            i = j
        elif ch.isdigit() or ch == ".":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "."):
                j += 1
            yield "other", sql[i:j], i
            i = j
        else:
            yield "punct", ch, i
            i += 1


def _skip_quoted(sql: str, start: int, quote: str) -> int:
    """Index just past the literal opening at `start`; a doubled quote is an escaped quote, not the end."""
    i = start + 1
    while True:
        end = sql.find(quote, i)
        if end < 0:
            raise _Refused(f"unterminated {quote}...{quote} literal")
        if sql.startswith(quote * 2, end):
            i = end + 2
            continue
        return end + 1


_QUADRATIC_TWO_ARG = frozenset({"trim", "ltrim", "rtrim"})
"""Functions whose two-argument form runs an O(len(X)·len(Y)) C loop that the progress handler cannot interrupt
(``ltrim(X, Y)`` on two 20 kB strings takes ~1.6 s); only their one-argument form is allowed."""


def _check_calls(tokens: list[tuple[str, str, int]]) -> None:
    """Refuse two-argument trim/ltrim/rtrim calls (see _QUADRATIC_TWO_ARG); names may be quoted, so tokens.

    One pass with a stack of open parentheses (each remembers whether it opened such a call), so hostile nesting
    costs linear time.
    """
    open_calls: list[str | None] = []
    previous: tuple[str, str] | None = None
    for kind, value, _ in tokens:
        if kind == "punct" and value == "(":
            is_call = previous is not None and previous[0] == "word" and previous[1] in _QUADRATIC_TWO_ARG
            open_calls.append(previous[1] if is_call and previous is not None else None)
        elif kind == "punct" and value == ")":
            if open_calls:
                open_calls.pop()
        elif kind == "punct" and value == "," and open_calls and open_calls[-1] is not None:
            raise _Refused(f"{open_calls[-1]}() with two arguments is not allowed")
        previous = (kind, value)


def _matching_parens(tokens: list[tuple[str, str, int]]) -> dict[int, int]:
    """Index of every '(' -> index of its ')' (the last token when it never closes); refuses nesting deeper than
    :data:`MAX_PAREN_DEPTH` (SQLite's own parser stack would refuse it too)."""
    matches: dict[int, int] = {}
    stack: list[int] = []
    for index, (kind, value, _) in enumerate(tokens):
        if kind != "punct":
            continue
        if value == "(":
            stack.append(index)
            if len(stack) > MAX_PAREN_DEPTH:
                raise _Refused(f"parentheses nested more than {MAX_PAREN_DEPTH} deep")
        elif value == ")" and stack:
            matches[stack.pop()] = index
    for index in stack:
        matches[index] = len(tokens) - 1
    return matches


def _cte_definitions(tokens: list[tuple[str, str, int]]) -> tuple[dict[str, list[tuple[int, int]]], set[int]]:
    """Every ``name [(columns)] AS [NOT] [MATERIALIZED] ( body )`` in the token stream: name -> body spans
    (first and last token index, parentheses excluded), and the indices of the defining name tokens.

    A lexical over-approximation on purpose: a ``WINDOW w AS (...)`` definition is counted as a CTE too, which can
    only make :func:`expanded_size` larger; a nested WITH that shadows a name contributes its largest body.
    """
    matches = _matching_parens(tokens)
    definitions: dict[str, list[tuple[int, int]]] = {}
    names: set[int] = set()
    for index, (kind, value, _) in enumerate(tokens):
        if kind != "word":
            continue
        cursor = index + 1
        if cursor < len(tokens) and tokens[cursor][:2] == ("punct", "("):
            cursor = matches[cursor] + 1
        if cursor >= len(tokens) or tokens[cursor][:2] != ("word", "as"):
            continue
        cursor += 1
        for hint in ("not", "materialized"):
            if cursor < len(tokens) and tokens[cursor][:2] == ("word", hint):
                cursor += 1
        if cursor < len(tokens) and tokens[cursor][:2] == ("punct", "("):
            definitions.setdefault(value, []).append((cursor + 1, matches[cursor] - 1))
            names.add(index)
            if len(names) > MAX_CTES:
                raise _Refused(f"more than {MAX_CTES} common table expressions")
    return definitions, names


def expanded_size(tokens: list[tuple[str, str, int]]) -> int:
    """Tokens of the statement with every reference to a common table expression replaced by the CTE's body,
    recursively: an upper bound on the parse tree SQLite builds when it inlines non-materialised CTEs.

    A reference inside the CTE's own body (recursion) or inside a cycle counts one token. Linear in the references
    times the CTE nesting depth (both bounded: MAX_CTES, MAX_PAREN_DEPTH). Raises _Refused for a statement with
    more than MAX_CTES CTEs or parentheses nested deeper than MAX_PAREN_DEPTH.
    """
    definitions, name_indices = _cte_definitions(tokens)
    if not definitions:
        return len(tokens)
    references = [(index, value) for index, (kind, value, _) in enumerate(tokens)
                  if kind == "word" and value in definitions and index not in name_indices]
    positions = [index for index, _ in references]
    memo: dict[str, int] = {}
    active: set[str] = set()

    def span_size(first: int, last: int) -> int:
        total = max(0, last - first + 1)
        for _, name in references[bisect.bisect_left(positions, first):bisect.bisect_right(positions, last)]:
            if name not in active:
                total += cte_size(name) - 1
            if total > MAX_EXPANDED_TOKENS:
                break
        return total

    def cte_size(name: str) -> int:
        if name not in memo:
            active.add(name)
            memo[name] = min(MAX_EXPANDED_TOKENS + 1, max(span_size(first, last) for first, last in definitions[name]))
            active.discard(name)
        return memo[name]

    return span_size(0, len(tokens) - 1)


def single_select(sql: str) -> str:
    """The one SELECT/WITH statement in `sql` (without its trailing ';'); raises _Refused for anything else.

    Trailing ';' and comments after the statement are allowed; any other token after the first top-level ';' is a
    second statement and refused, so ``SELECT 1; DROP TABLE t`` never reaches SQLite.
    """
    if not isinstance(sql, str):
        raise _Refused(f"SQL must be text, got {type(sql).__name__}")
    if len(sql) > MAX_SQL_CHARS:
        raise _Refused(f"SQL longer than {MAX_SQL_CHARS} characters")
    if "\x00" in sql:
        raise _Refused("SQL contains a NUL character")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("SQL is not valid Unicode (lone surrogate)") from None
    tokens = list(_tokens(sql))
    semicolons = [index for index, (kind, value, _) in enumerate(tokens) if (kind, value) == ("punct", ";")]
    if semicolons:
        cut = semicolons[0]
        if len(semicolons) != len(tokens) - cut:  # anything but more ';' after the first one
            raise _Refused("more than one SQL statement")
        sql = sql[:tokens[cut][2]]
        tokens = tokens[:cut]
    if not tokens or (tokens[0][0], tokens[0][1]) not in (("word", "select"), ("word", "with")):
        first = tokens[0][1] if tokens else "an empty statement"
        raise _Refused(f"only SELECT or WITH queries are allowed, got {first[:40]!r}")
    _check_calls(tokens)
    if expanded_size(tokens) > MAX_EXPANDED_TOKENS:
        raise _Refused(f"the statement expands to more than {MAX_EXPANDED_TOKENS} tokens once its common table "
                       f"expressions are inlined (a CTE read many times over)")
    if not sqlite3.complete_statement(sql + "\n;"):  # SQLite's own lexer agrees the statement is closed
        raise _Refused("incomplete SQL statement")
    return sql


# ----------------------------------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------------------------------


class _Guard:
    """Authorizer + progress handler state for one query: the deadline, denials and the tables read."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.memory_ceiling: int | None = None  # SQLite heap bytes above which the query is aborted
        self.schema: frozenset[str] = frozenset()  # lower-cased table/view names; READs of anything else are CTEs
        self.tables: set[str] = set()
        self.denied: list[str] = []
        self.timed_out = False
        self.out_of_memory = False

    def start(self) -> None:
        """Arm the memory check: from now on SQLite's heap may grow by MAX_QUERY_MEMORY_BYTES."""
        if _memory_used is not None:
            self.memory_ceiling = _memory_used() + MAX_QUERY_MEMORY_BYTES

    def over_budget(self) -> bool:
        """Whether the deadline has passed or the memory ceiling is exceeded (and remember which)."""
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return True
        if self.memory_ceiling is not None and _memory_used() > self.memory_ceiling:
            self.out_of_memory = True
            return True
        return False

    def authorize(self, action: int, arg1: str | None, arg2: str | None, db_name: str | None,
                  source: str | None) -> int:
        """SQLite authorizer: allow reads, SELECT, recursive CTEs and allow-listed functions; deny the rest.

        Also the budget check during preparation (the progress handler only runs while the statement steps): once
        over time or memory, every further request is denied, so preparing the statement fails promptly.
        """
        if self.over_budget():
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            if name in ALLOWED_FUNCTIONS:
                return sqlite3.SQLITE_OK
            self._deny(f"function {name}()")
            return sqlite3.SQLITE_DENY
        if action in _ALLOWED_ACTIONS:
            if action == sqlite3.SQLITE_READ and arg1 and arg1.lower() in self.schema:
                self.tables.add(arg1.lower())
            return sqlite3.SQLITE_OK
        self._deny(f"action {_ACTION_NAMES.get(action, action)}")
        return sqlite3.SQLITE_DENY

    def _deny(self, what: str) -> None:
        if len(self.denied) < 8:
            self.denied.append(what)

    def progress(self) -> int:
        """Progress handler: a non-zero return aborts the running statement ("interrupted")."""
        return 1 if self.over_budget() else 0


_ACTION_NAMES = {getattr(sqlite3, name): name[len("SQLITE_"):] for name in (
    "SQLITE_ALTER_TABLE", "SQLITE_ANALYZE", "SQLITE_ATTACH", "SQLITE_CREATE_INDEX", "SQLITE_CREATE_TABLE",
    "SQLITE_CREATE_TEMP_INDEX", "SQLITE_CREATE_TEMP_TABLE", "SQLITE_CREATE_TEMP_TRIGGER", "SQLITE_CREATE_TEMP_VIEW",
    "SQLITE_CREATE_TRIGGER", "SQLITE_CREATE_VIEW", "SQLITE_CREATE_VTABLE", "SQLITE_DELETE", "SQLITE_DETACH",
    "SQLITE_DROP_INDEX", "SQLITE_DROP_TABLE", "SQLITE_DROP_TEMP_INDEX", "SQLITE_DROP_TEMP_TABLE",
    "SQLITE_DROP_TEMP_TRIGGER", "SQLITE_DROP_TEMP_VIEW", "SQLITE_DROP_TRIGGER", "SQLITE_DROP_VIEW",
    "SQLITE_DROP_VTABLE", "SQLITE_INSERT", "SQLITE_PRAGMA", "SQLITE_REINDEX", "SQLITE_SAVEPOINT",
    "SQLITE_TRANSACTION", "SQLITE_UPDATE") if hasattr(sqlite3, name)}


def _decode_text(raw: bytes) -> str:
    """Text factory: a query can build invalid UTF-8 (``CAST(x'ff' AS TEXT)``); replace instead of failing."""
    return raw.decode("utf-8", "replace")


def _cell_size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 8


def _open_read_only(path: Path, timeout_s: float) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=min(timeout_s, 1.0), isolation_level=None,
                           check_same_thread=False, cached_statements=0)
    try:
        conn.enable_load_extension(False)
    except AttributeError:  # Python built without extension support: already impossible
        pass
    conn.text_factory = _decode_text
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA trusted_schema=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    for limit, value in _LIMITS:
        conn.setlimit(limit, value)
    return conn


def run_query(db_path: str | Path, sql: str, *, timeout_s: float = 1.0, max_rows: int = 1000,
              max_result_bytes: int = MAX_RESULT_BYTES) -> QueryResult:
    """Execute one read-only SELECT/WITH `sql` on the SQLite file `db_path`; never raises (see module doc).

    Returns up to `max_rows` rows (``truncated`` when there were more, or when the cells exceeded
    `max_result_bytes`), the column names and the tables read. Timeouts, refusals and SQL errors come back as
    ``ok=False`` with ``error`` set.
    """
    start = time.monotonic()
    guard = _Guard(start + max(0.0, float(timeout_s)) if _is_number(timeout_s) else start)

    def failed(error: str) -> QueryResult:
        return QueryResult(ok=False, error=error[:500], tables=frozenset(guard.tables),
                           elapsed_s=time.monotonic() - start)

    try:
        statement = single_select(sql)
    except _Refused as exc:
        return failed(f"refused: {exc}")
    try:
        path = Path(db_path)
        if not path.is_file():
            return failed(f"database not found: {db_path}")
        max_rows = max(0, int(max_rows))
    except Exception as exc:  # noqa: BLE001 - odd db_path/max_rows types: a result, not a raise
        return failed(f"bad arguments: {type(exc).__name__}: {exc}")

    conn: sqlite3.Connection | None = None
    try:
        conn = _open_read_only(path, timeout_s if _is_number(timeout_s) else 1.0)
        guard.schema = frozenset(str(name).lower() for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"))
        conn.set_authorizer(guard.authorize)
        conn.set_progress_handler(guard.progress, PROGRESS_OPCODES)
        guard.start()
        cursor = conn.execute(statement)
        columns = [description[0] for description in cursor.description or ()]
        rows: list[tuple[Any, ...]] = []
        size = 0
        truncated = False
        while True:
            row = cursor.fetchone()
            if row is None:
                break
            size += sum(_cell_size(value) for value in row)
            if len(rows) >= max_rows or size > max_result_bytes:
                truncated = True
                break
            rows.append(tuple(row))
        return QueryResult(ok=True, rows=rows, columns=columns, truncated=truncated,
                           tables=frozenset(guard.tables), elapsed_s=time.monotonic() - start)
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error, MemoryError-like OverflowError, ... all are results
        if guard.timed_out:
            return failed(f"timeout: query ran past {timeout_s} s")
        if guard.out_of_memory:
            return failed(f"memory: query used more than {MAX_QUERY_MEMORY_BYTES >> 20} MB")
        if isinstance(exc, MemoryError):  # SQLITE_NOMEM, which SQLITE_LIMIT_VDBE_OP also raises
            return failed(f"MemoryError: out of memory or more than {MAX_VDBE_OPS} VM instructions")
        if guard.denied:
            return failed(f"not authorized: {', '.join(guard.denied)}")
        return failed(f"{type(exc).__name__}: {exc}")
    finally:
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value

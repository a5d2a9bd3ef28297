"""Verifiers for the commerce tasks (extraction, sql_qa, insights, push), registered as GRPO reward components.

Every verifier is ``fn(record, completion) -> float | None``: None for a record of another task, else a score in
[0, 1]. The completion is hostile model output: no string makes a verifier raise, hang or score outside [0, 1]
(hypothesis-tested), and long texts are only scanned up to :data:`MAX_SCAN_CHARS`. A *malformed record* (a data
bug) does raise, so the reward composer reports it as an error instead of silently scoring 0.

Record contract (built by the commerce data generator):

* extraction: ``fields: {name: value}`` with float numbers, ISO dates ``YYYY-MM-DD`` and strings.
* sql_qa: ``gold_sql``, ``answer`` (number or string), ``db_path`` (SQLite file).
* insights: ``entities: [str]``, ``numbers: [float]``, ``tolerance`` (relative).
* push: ``constraints: {max_chars, must_mention: [str], discount_pct: int | None, cta: bool}``.

Numbers in text are read the Brazilian way (:func:`parse_ptbr_number`), text is compared case- and
accent-insensitively (:func:`fold`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import json_repair

from aegir.rl.rewards import register_reward
from aegir.tasks.commerce.sandbox import QueryResult, run_query

MAX_SCAN_CHARS = 20_000
"""Verifiers look at most at this many leading characters of a completion (bounded work on megabyte outputs)."""
MAX_JSON_CHARS = 8_000
"""Longest JSON object span handed to the parsers (json-repair is pure Python; extraction objects are small)."""
MAX_JSON_DEPTH = 16
"""Deeper brace/bracket nesting is not an extraction answer, and would make json-repair recurse."""
MAX_NUMBERS = 500
"""At most this many numbers are read from one completion."""
NUMBER_REL_TOL = 0.005
NUMBER_ABS_TOL = 0.01
"""A number matches a reference when within 0.5 % of it *or* within 0.01 (cents) of it."""
INSIGHTS_MAX_CHARS = 600
"""Insights longer than this are penalised linearly, reaching 0 at twice the length (see insights_match)."""
SQL_TIMEOUT_S = 1.0
GOLD_SQL_TIMEOUT_S = 10.0
SQL_MAX_ROWS = 1000

# sql_exec tiers (V4.2), additive, summing to 1.
SQL_TIER_EXECUTES = 0.1
SQL_TIER_TABLES = 0.2
SQL_TIER_RESULT = 0.4
SQL_TIER_ANSWER = 0.3
# sql_keyword tiers (V4.1), additive, summing to 1.
KW_TIER_SELECT = 0.1
KW_TIER_TABLES = 0.2
KW_TIER_KEYWORDS = 0.4
KW_TIER_ANSWER = 0.3

CTA_VERBS: frozenset[str] = frozenset({
    "compre", "aproveite", "confira", "garanta", "acesse", "clique", "corra", "baixe", "peca", "experimente",
    "descubra", "visite", "resgate", "assine", "cadastre", "venha", "adquira", "reserve", "toque", "saiba",
    "use", "ative", "escolha", "leve", "conheca", "participe", "aproveita", "vem", "pegue", "economize",
})
"""Imperative call-to-action verbs, folded (no accents): "peça" is "peca", "conheça" is "conheca"."""


# ----------------------------------------------------------------------------------------------------------------
# Text and number normalisation
# ----------------------------------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case- and accent-insensitive form: NFKD without combining marks, casefolded, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def mentions(folded_text: str, folded_phrase: str) -> bool:
    """Whether the (already folded) phrase occurs in the text as whole words ("sp" is not in "espera")."""
    if not folded_phrase:
        return False
    pattern = r"(?<!\w)" + re.escape(folded_phrase) + r"(?!\w)"
    return re.search(pattern, folded_text) is not None


_NUMBER_TEXT = re.compile(r"\s*(?P<sign1>[-+\u2212])?\s*(?:R\$)?\s*(?P<sign2>[-+\u2212])?\s*"
                          r"(?P<body>[0-9](?:[0-9.,]*[0-9])?)\s*%?\s*")


def parse_ptbr_number(text: str) -> float | None:
    """One number written the Brazilian way, or None if `text` is not exactly one number.

    Accepts an optional sign, ``R$`` and a trailing ``%`` ("12%" -> 12.0: the percentage value, not 0.12).
    Separators, decided from the digits alone:

    * both ``.`` and ``,`` present: the rightmost one is the decimal separator, the other must group thousands
      ("1.234,56" and "1,234.56" -> 1234.56);
    * one kind, several times: thousands groups of exactly 3 digits ("1.234.567" -> 1234567);
    * one separator followed by 1-2 digits, or by 4+: decimal ("1234,5" -> 1234.5, "3.14159" -> 3.14159);
    * one separator followed by exactly 3 digits (ambiguous): PT-BR wins, so ``.`` is a thousands separator when it
      groups ("1.234" -> 1234, but "0.125" -> 0.125) and ``,`` is decimal ("1,234" -> 1.234).

    Malformed grouping ("1.23.4", "12.34,5.6") is None rather than a guess.
    """
    if not isinstance(text, str) or len(text) > 64:
        return None
    match = _NUMBER_TEXT.fullmatch(text.replace("\u00a0", " "))
    if match is None or (match.group("sign1") and match.group("sign2")):
        return None
    value = _parse_body(match.group("body"))
    if value is None:
        return None
    sign = match.group("sign1") or match.group("sign2") or "+"
    return -value if sign in "-\u2212" else value


def _grouped(digits: str, sep: str) -> bool:
    """Whether `digits` is valid thousands grouping with `sep`: 1-3 leading digits (no leading 0), then 3s."""
    parts = digits.split(sep)
    head = parts[0]
    return (1 <= len(head) <= 3 and head.isdigit() and head[0] != "0"
            and all(len(part) == 3 and part.isdigit() for part in parts[1:]))


def _parse_body(body: str) -> float | None:
    dots, commas = body.count("."), body.count(",")
    if dots and commas:
        decimal = "." if body.rfind(".") > body.rfind(",") else ","
        thousands = "," if decimal == "." else "."
        if body.count(decimal) != 1:
            return None
        integer, fraction = body.split(decimal)
        if not _grouped(integer, thousands):
            return None
        return float(integer.replace(thousands, "") + "." + fraction)
    if not dots and not commas:
        return float(body)
    sep = "." if dots else ","
    if body.count(sep) > 1:
        return float(body.replace(sep, "")) if _grouped(body, sep) else None
    integer, fraction = body.split(sep)
    if sep == "." and len(fraction) == 3 and _grouped(body, "."):
        return float(integer + fraction)
    return float(integer + "." + fraction)


# A number token in running text: digits with inner separators, an adjacent sign only after a non-word character
# (so "2023-03-12" is three unsigned numbers, "R$ -10" is negative).
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.,])([-\u2212]?)([0-9](?:[0-9.,]*[0-9])?)")


def extract_ptbr_numbers(text: str, limit: int = MAX_NUMBERS) -> list[float]:
    """Every number in `text` (first MAX_SCAN_CHARS characters, at most `limit` numbers), PT-BR parsed.

    A token that is not one valid number ("1,2,3") is read as the numbers between its separators (a list).
    """
    found: list[float] = []
    for match in _NUMBER_IN_TEXT.finditer(text[:MAX_SCAN_CHARS]):
        sign, body = match.groups()
        value = _parse_body(body) if len(body) <= 64 else None
        values = [value] if value is not None else [float(part) for part in re.split(r"[.,]", body)[:limit] if part]
        for number in values:
            found.append(-number if sign else number)
        if len(found) >= limit:
            return found[:limit]
    return found


def numbers_close(predicted: float, reference: float) -> bool:
    """Within 0.5 % or 0.01 of the reference (NUMBER_REL_TOL / NUMBER_ABS_TOL); non-finite never matches."""
    if not (math.isfinite(predicted) and math.isfinite(reference)):
        return False
    return abs(predicted - reference) <= max(NUMBER_ABS_TOL, NUMBER_REL_TOL * abs(reference))


def as_number(value: Any) -> float | None:
    """A JSON value as a number: int/float (not bool), or a PT-BR numeric string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer with hundreds of digits
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return parse_ptbr_number(value)
    return None


_MONTHS = {"jan": 1, "fev": 2, "feb": 2, "mar": 3, "abr": 4, "apr": 4, "mai": 5, "may": 5, "jun": 6, "jul": 7,
           "ago": 8, "aug": 8, "set": 9, "sep": 9, "out": 10, "oct": 10, "nov": 11, "dez": 12, "dec": 12}
_ISO_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[t ][0-9:.+\-z]*)?")  # on folded (lower-case) text
_DMY_DATE = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})")
_WORD_DATE = re.compile(r"(\d{1,2})(?:\s+de)?\s+([a-z]{3})[a-z]*\.?(?:\s+de)?\s+(\d{4})")


def normalize_date(value: Any) -> str | None:
    """ISO ``YYYY-MM-DD`` for a date written as ISO (optionally with a time), Brazilian ``DD/MM/YYYY`` (also with
    ``-`` or ``.``, or a 2-digit year meaning 20YY) or "12 de março de 2023"; None when not a valid date."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = fold(value)
    match = _ISO_DATE.fullmatch(text)
    if match:
        year, month, day = (int(group) for group in match.groups())
    elif match := _DMY_DATE.fullmatch(text):
        day, month, year = (int(group) for group in match.groups())
        year += 2000 if year < 100 else 0
    elif match := _WORD_DATE.fullmatch(text):
        month_number = _MONTHS.get(match.group(2))
        if month_number is None:
            return None
        day, month, year = int(match.group(1)), month_number, int(match.group(3))
    else:
        return None
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _is_iso_date(value: str) -> bool:
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None and normalize_date(value) == value


# ----------------------------------------------------------------------------------------------------------------
# Record access (a malformed record is a data bug: raise, the composer reports it)
# ----------------------------------------------------------------------------------------------------------------


def _task(record: Mapping[str, Any]) -> Any:
    return record.get("task") if isinstance(record, Mapping) else None


def _require(record: Mapping[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    value = record.get(key)
    if not isinstance(value, types) or isinstance(value, bool):
        raise ValueError(f"malformed {record.get('task')} record {record.get('id')!r}: '{key}' is {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def _object_span(text: str, start: int) -> str | None:
    """From the '{' at `start` to its matching '}' (string-aware), or to the end if it never closes (json-repair
    then closes it); None when nesting exceeds MAX_JSON_DEPTH or the span exceeds MAX_JSON_CHARS."""
    depth, in_string, escaped = 0, False, False
    end = min(len(text), start + MAX_JSON_CHARS)
    for index in range(start, end):
        ch = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return None
        elif ch in "}]":
            depth -= 1
            if depth <= 0:
                return text[start:index + 1]
    return text[start:end] if end == len(text) else None


def parse_json_object(completion: str) -> dict[str, Any] | None:
    """The JSON object a completion answers with, or None.

    Looks inside the first code fence that contains a '{' (```json or bare), else the whole text; takes the first
    {...} span; ``json.loads`` it, falling back to json-repair (single quotes, trailing commas, unquoted keys, an
    object cut off by the length limit).
    """
    text = completion[:MAX_SCAN_CHARS]
    for fence in _FENCE.finditer(text):
        if "{" in fence.group(2):
            text = fence.group(2)
            break
    start = text.find("{")
    if start < 0:
        return None
    span = _object_span(text, start)
    if span is None:
        return None
    try:
        parsed = json.loads(span)
    except (ValueError, RecursionError):
        try:
            parsed = json_repair.loads(span)
        except (Exception, RecursionError):  # noqa: BLE001 - json-repair on hostile text: any failure is "no JSON"
            return None
    return parsed if isinstance(parsed, dict) else None


def _field_key(name: Any) -> str:
    return re.sub(r"[\s\-]+", "_", fold(str(name)))


def field_matches(reference: Any, predicted: Any) -> bool:
    """One extracted value against its canonical reference: numbers within tolerance after PT-BR parsing, ISO-date
    references against any date spelling, other strings case/accent/whitespace-insensitively."""
    if reference is None:
        return predicted is None or (isinstance(predicted, str) and not predicted.strip())
    if isinstance(reference, bool):
        if isinstance(predicted, str):
            return fold(predicted) in ({"true", "sim", "yes"} if reference else {"false", "nao", "no"})
        return predicted is reference
    if isinstance(reference, (int, float)):
        number = as_number(predicted)
        return number is not None and numbers_close(number, float(reference))
    if isinstance(reference, str):
        if _is_iso_date(reference):
            return normalize_date(predicted) == reference
        if isinstance(predicted, bool) or not isinstance(predicted, (str, int, float)):
            return False
        return fold(str(predicted)) == fold(reference)
    return predicted == reference


@register_reward("extraction_fields")
def extraction_fields(record: Mapping[str, Any], completion: str) -> float | None:
    """Fraction of the reference fields the completion's JSON object gets right (keys matched case/accent-
    insensitively, spaces and hyphens as underscores); extra keys cost nothing; no parsable object scores 0."""
    if _task(record) != "extraction":
        return None
    fields = _require(record, "fields", Mapping)
    if not fields:
        raise ValueError(f"malformed extraction record {record.get('id')!r}: empty 'fields'")
    predicted = parse_json_object(completion)
    if predicted is None:
        return 0.0
    by_key: dict[str, Any] = {}
    for key, value in predicted.items():
        by_key.setdefault(_field_key(key), value)
    missing = object()
    matched = 0
    for name, reference in fields.items():
        value = by_key.get(_field_key(name), missing)
        if value is missing:
            matched += reference is None
        else:
            matched += field_matches(reference, value)
    return matched / len(fields)


# ----------------------------------------------------------------------------------------------------------------
# sql_qa: shared parsing
# ----------------------------------------------------------------------------------------------------------------

_SQL_FENCE = re.compile(r"```[ \t]*(?:sql|sqlite)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
# SELECT, or WITH only when a CTE follows ("WITH name [(cols)] AS (") so the English word "with" is not SQL.
_SQL_START = re.compile(r"\bselect\b|\bwith\s+(?:recursive\s+)?[\w\"`\[\]]+\s*(?:\([^()]{0,200}\)\s*)?as\s*\(",
                        re.IGNORECASE)
# Where free-text SQL ends: a blank line, a code fence, or an answer line.
_SQL_END = re.compile(r"\n[ \t]*\n|```|\n[ \t]*(?:resposta|answer)\b", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"(?:resposta|answer)(?:[ \t]+final)?[ \t]*[:=][ \t]*([^\n]*)", re.IGNORECASE)


def extract_sql(completion: str) -> str | None:
    """The query a completion proposes: the first ```sql block, else the text from the first SELECT/WITH keyword
    to a blank line, a fence or a "Resposta:" line. The whole region goes to the sandbox, so a smuggled second
    statement ("SELECT 1; DROP TABLE t") makes it refuse the query rather than run the first half."""
    text = completion[:MAX_SCAN_CHARS]
    fence = _SQL_FENCE.search(text)
    if fence:
        return fence.group(1).strip() or None
    start = _SQL_START.search(text)
    if start is None:
        return None
    region = text[start.start():]
    end = _SQL_END.search(region)
    return (region[:end.start()] if end else region).strip() or None


def _without_sql(completion: str, sql: str | None) -> str:
    text = completion[:MAX_SCAN_CHARS]
    return text.replace(sql, " ") if sql else text


def answer_matches(completion: str, sql: str | None, answer: Any) -> bool:
    """Whether the completion's final answer equals the record's answer.

    The answer is the last "Resposta: X" (or "Answer: X") line; without one, for a numeric answer the last number
    in the text outside the SQL, for a text answer the last non-empty line outside the SQL. Numbers compare with
    numbers_close (the first number on the answer line counts, so listing many numbers does not help), text
    case/accent-insensitively without surrounding quotes and final punctuation.
    """
    text = _without_sql(completion, sql)
    lines = _ANSWER_LINE.findall(text)
    candidate = lines[-1] if lines else None
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        numbers = extract_ptbr_numbers(candidate) if candidate is not None else extract_ptbr_numbers(text)
        if not numbers:
            return False
        chosen = numbers[0] if candidate is not None else numbers[-1]
        return numbers_close(chosen, float(answer))
    if candidate is None:
        non_empty = [line for line in text.splitlines() if line.strip() and "```" not in line]
        if not non_empty:
            return False
        candidate = non_empty[-1]
    return _clean_text_answer(candidate) == _clean_text_answer(str(answer))


def _clean_text_answer(text: str) -> str:
    return fold(text).strip(" \t\"'`*.,;:!")


def _sql_record(record: Mapping[str, Any]) -> tuple[str, str, Any]:
    gold_sql = _require(record, "gold_sql", str)
    db_path = _require(record, "db_path", (str, os.PathLike))
    answer = record.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, (int, float, str)):
        raise ValueError(f"malformed sql_qa record {record.get('id')!r}: 'answer' is {answer!r}")
    return gold_sql, str(db_path), answer


# ----------------------------------------------------------------------------------------------------------------
# sql_exec (V4.2): execution-validated tiers
# ----------------------------------------------------------------------------------------------------------------


def gold_result(db_path: str, gold_sql: str) -> QueryResult:
    """The gold query's result, run once per (db file version, SQL) through the same sandbox as the policy's.

    A gold query that fails (or returns more than SQL_MAX_ROWS rows) is a data bug and raises; failures are not
    cached, so a transient timeout is retried on the next call.
    """
    stat = Path(db_path).stat()
    return _gold_result_cached(db_path, gold_sql, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _gold_result_cached(db_path: str, gold_sql: str, mtime_ns: int, size: int) -> QueryResult:
    result = run_query(db_path, gold_sql, timeout_s=GOLD_SQL_TIMEOUT_S, max_rows=SQL_MAX_ROWS)
    if not result.ok:
        raise ValueError(f"gold SQL fails in the sandbox ({result.error}): {gold_sql[:200]}")
    if result.truncated:
        raise ValueError(f"gold SQL returns more than {SQL_MAX_ROWS} rows: {gold_sql[:200]}")
    return result


def _canonical_cell(value: Any) -> tuple[Any, ...]:
    """Sort key for a cell: ints and floats are one numeric kind (COUNT vs SUM of whole numbers agree)."""
    if value is None:
        return (0,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return (1, number) if math.isfinite(number) else (1, 0.0, repr(number))
    if isinstance(value, bytes):
        return (3, value)
    return (2, str(value))


def _cells_equal(a: Any, b: Any) -> bool:
    ka, kb = _canonical_cell(a), _canonical_cell(b)
    if ka[0] == kb[0] == 1 and len(ka) == len(kb) == 2:
        return math.isclose(ka[1], kb[1], rel_tol=1e-6, abs_tol=1e-9)
    return ka == kb


def same_rows(rows: Sequence[tuple[Any, ...]], gold: Sequence[tuple[Any, ...]]) -> bool:
    """Multiset equality of result rows, ignoring row order and column names, with numbers compared to a relative
    1e-6 (float sums computed in a different order) and ints equal to the same floats. Column order matters."""
    if len(rows) != len(gold):
        return False
    if any(len(row) != len(gold[0]) for row in [*rows, *gold]):
        return False

    def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_canonical_cell(value) for value in row)

    return all(all(_cells_equal(a, b) for a, b in zip(row, gold_row))
               for row, gold_row in zip(sorted(rows, key=key), sorted(gold, key=key)))


@register_reward("sql_exec", untrusted=True)
def sql_exec(record: Mapping[str, Any], completion: str) -> float | None:
    """V4.2 execution-validated text-to-SQL reward: additive tiers, each SQL tier requiring the one before, 1.0 in all.

    * +0.1 the extracted SQL (extract_sql) is one read-only SELECT/WITH that executes in the sandbox within
      SQL_TIMEOUT_S (refused, failing or timing-out SQL earns no SQL tier);
    * +0.2 it reads every table the gold query reads (from the sandbox's authorizer, so aliases, quoting, comma
      joins and subqueries are seen as SQLite sees them; extra tables are allowed);
    * +0.4 and its result equals the gold result as a multiset of rows (same_rows), untruncated. Requiring the
      tables tier means ``SELECT 42`` with a guessed number earns no result credit;
    * +0.3 the final answer text matches ``record["answer"]`` (answer_matches), independently of the SQL.
    """
    if _task(record) != "sql_qa":
        return None
    gold_sql, db_path, answer = _sql_record(record)
    gold = gold_result(db_path, gold_sql)
    sql = extract_sql(completion)
    score = 0.0
    if sql is not None:
        result = run_query(db_path, sql, timeout_s=SQL_TIMEOUT_S, max_rows=SQL_MAX_ROWS)
        if result.ok:
            score += SQL_TIER_EXECUTES
            if gold.tables <= result.tables:
                score += SQL_TIER_TABLES
                if not result.truncated and same_rows(result.rows or [], gold.rows or []):
                    score += SQL_TIER_RESULT
    if answer_matches(completion, sql, answer):
        score += SQL_TIER_ANSWER
    return min(1.0, score)


# ----------------------------------------------------------------------------------------------------------------
# sql_keyword (V4.1): the older keyword design, kept for the reward=v41 comparison
# ----------------------------------------------------------------------------------------------------------------

_FROM_TABLE = re.compile(r"\b(?:from|join)\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][\w$]*)", re.IGNORECASE)
_GOLD_KEYWORDS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE) for name, pattern in {
        "count": r"\bcount\s*\(", "sum": r"\bsum\s*\(", "avg": r"\bavg\s*\(", "min": r"\bmin\s*\(",
        "max": r"\bmax\s*\(", "where": r"\bwhere\b", "group by": r"\bgroup\s+by\b", "order by": r"\border\s+by\b",
        "having": r"\bhaving\b", "limit": r"\blimit\b", "distinct": r"\bdistinct\b", "join": r"\bjoin\b",
    }.items()
}


def from_tables(sql: str) -> set[str]:
    """Table names right after FROM/JOIN (quotes removed, lower-cased); comma joins beyond the first are missed,
    one of the weaknesses V4.2 fixes by asking SQLite."""
    return {name.strip("\"`[]").lower() for name in _FROM_TABLE.findall(sql)}


def sql_keywords(sql: str) -> set[str]:
    """Which aggregate/filter/shape keywords of _GOLD_KEYWORDS the SQL uses."""
    return {name for name, pattern in _GOLD_KEYWORDS.items() if pattern.search(sql)}


def _answer_anywhere(completion: str, answer: Any) -> bool:
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return any(numbers_close(number, float(answer)) for number in extract_ptbr_numbers(completion))
    return mentions(fold(completion[:MAX_SCAN_CHARS]), fold(str(answer)))


@register_reward("sql_keyword")
def sql_keyword(record: Mapping[str, Any], completion: str) -> float | None:
    """V4.1 keyword reward, no execution: additive tiers, 1.0 in all.

    * +0.1 the extracted SQL contains SELECT;
    * +0.2 × the fraction of the gold's FROM/JOIN tables that follow FROM/JOIN in it;
    * +0.4 × the fraction of the gold's keywords (sql_keywords: COUNT/SUM/AVG/MIN/MAX, WHERE, GROUP BY, ORDER BY,
      HAVING, LIMIT, DISTINCT, JOIN) it uses; a gold with none gives the full tier to any SELECT;
    * +0.3 the answer appears anywhere in the completion (any number within tolerance; text as whole words).

    Known weaknesses, kept on purpose for the comparison: SQL that does not run still scores up to 0.7, and
    listing many numbers finds the answer.
    """
    if _task(record) != "sql_qa":
        return None
    gold_sql, _, answer = _sql_record(record)
    sql = extract_sql(completion) or ""
    has_select = re.search(r"\bselect\b", sql, re.IGNORECASE) is not None
    score = KW_TIER_SELECT if has_select else 0.0
    gold_tables = from_tables(gold_sql)
    if gold_tables:
        score += KW_TIER_TABLES * len(gold_tables & from_tables(sql)) / len(gold_tables)
    gold_keywords = sql_keywords(gold_sql)
    if gold_keywords:
        score += KW_TIER_KEYWORDS * len(gold_keywords & sql_keywords(sql)) / len(gold_keywords)
    elif has_select:
        score += KW_TIER_KEYWORDS
    if _answer_anywhere(completion, answer):
        score += KW_TIER_ANSWER
    return min(1.0, score)


# ----------------------------------------------------------------------------------------------------------------
# insights
# ----------------------------------------------------------------------------------------------------------------


def length_factor(length: int, limit: int = INSIGHTS_MAX_CHARS) -> float:
    """1 up to `limit` characters, then linearly down to 0 at 2 × limit (padding with facts does not pay)."""
    if length <= limit:
        return 1.0
    return max(0.0, 1.0 - (length - limit) / limit)


def _fraction(flags: Iterable[bool]) -> float | None:
    values = list(flags)
    return sum(values) / len(values) if values else None


@register_reward("insights_match")
def insights_match(record: Mapping[str, Any], completion: str) -> float | None:
    """Mean of (fraction of entities mentioned, fraction of reference numbers present), times length_factor.

    Entities match as whole words, case/accent-insensitively; a reference number x is present when some number in
    the text (PT-BR parsed) is within ``tolerance × |x|`` of it. A list that is empty drops out of the mean.
    """
    if _task(record) != "insights":
        return None
    entities = _require(record, "entities", (list, tuple))
    numbers = _require(record, "numbers", (list, tuple))
    tolerance = _require(record, "tolerance", (int, float))
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"malformed insights record {record.get('id')!r}: tolerance {tolerance!r}")
    folded_entities = [fold(str(entity)) for entity in entities if fold(str(entity))]
    references = [float(number) for number in numbers]
    if not folded_entities and not references:
        raise ValueError(f"malformed insights record {record.get('id')!r}: no entities and no numbers to check")
    text = completion.strip()
    factor = length_factor(len(text))
    if not text or factor == 0.0:
        return 0.0
    folded = fold(text)
    found = extract_ptbr_numbers(text)
    parts = [part for part in (
        _fraction(mentions(folded, entity) for entity in folded_entities),
        _fraction(any(abs(number - reference) <= tolerance * abs(reference) + 1e-12 for number in found)
                  for reference in references),
    ) if part is not None]
    return factor * sum(parts) / len(parts)


# ----------------------------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------------------------

_PERCENT = re.compile(r"(?<![\w.,])([0-9]{1,3}(?:[.,][0-9]+)?)\s*(?:%|por\s*cento\b)", re.IGNORECASE)
_CTA = re.compile(r"(?<!\w)(?:" + "|".join(sorted(CTA_VERBS)) + r")(?!\w)")


def discount_ok(text: str, discount_pct: float) -> bool:
    """"X%" (or "X por cento") is present and no other percentage is: a wrong second discount is misinformation."""
    found = {parse_ptbr_number(value) for value in _PERCENT.findall(text[:MAX_SCAN_CHARS])}
    return bool(found) and all(value is not None and abs(value - discount_pct) < 1e-9 for value in found)


@register_reward("push_rules")
def push_rules(record: Mapping[str, Any], completion: str) -> float | None:
    """Fraction of satisfied rules for a push notification; an empty (whitespace-only) text scores 0.

    Rules, each worth the same: the stripped text has at most ``max_chars`` characters; one rule per
    ``must_mention`` phrase (whole words, case/accent-insensitive); when ``discount_pct`` is set, discount_ok;
    when ``cta`` is true, an imperative verb from CTA_VERBS ("compre", "aproveite", ...). ``cta`` false adds no
    rule.
    """
    if _task(record) != "push":
        return None
    constraints = _require(record, "constraints", Mapping)
    max_chars = constraints.get("max_chars")
    must_mention = constraints.get("must_mention") or []
    discount_pct = constraints.get("discount_pct")
    if (isinstance(max_chars, bool) or not isinstance(max_chars, int) or not isinstance(must_mention, (list, tuple))
            or (discount_pct is not None and (isinstance(discount_pct, bool)
                                              or not isinstance(discount_pct, (int, float))))):
        raise ValueError(f"malformed push record {record.get('id')!r}: constraints {dict(constraints)!r}")
    text = completion.strip()
    if not text:
        return 0.0
    folded = fold(text[:MAX_SCAN_CHARS])
    rules = [len(text) <= max_chars]
    rules += [mentions(folded, fold(str(phrase))) for phrase in must_mention if fold(str(phrase))]
    if discount_pct is not None:
        rules.append(discount_ok(text, float(discount_pct)))
    if constraints.get("cta"):
        rules.append(_CTA.search(folded) is not None)
    return sum(rules) / len(rules)

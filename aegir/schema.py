"""The vocabulary of the config schema (aegir/config/schema.py): a type is an annotation, allowed values metadata.

`key(gt=0)` declares a field with no default (the YAML under conf/ holds every default) and the range it must lie
in; `check_section` enforces those ranges on a config mapping and names the full key path in its one-line error.
Numbers that are NaN are refused everywhere: no knob means anything at NaN.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import Any, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

from aegir.errors import InputError

_BOUNDS = ("ge", "gt", "le", "lt")


def key(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
        choices: Sequence[str] | None = None) -> Any:
    """A schema field without a default, with the range (numbers, or each number of a list) or the closed set of
    values it accepts."""
    meta: dict[str, Any] = {name: value for name, value in zip(_BOUNDS, (ge, gt, le, lt)) if value is not None}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(metadata=meta)


def fail(path: str, message: str) -> None:
    """The one-line config error every check raises (exit status 2 at the entry points)."""
    raise InputError(f"config error: {path}: {message}")


def has_default(f: Field) -> bool:  # type: ignore[type-arg]
    return f.default is not MISSING or f.default_factory is not MISSING


def range_text(meta: Mapping[str, Any]) -> str:
    """`> 0`, `in [0, 1)`, `one of: a, b` -- how `explain` and the errors state a key's allowed values."""
    if "choices" in meta:
        return "one of: " + ", ".join(meta["choices"])
    low = [(b, meta[b]) for b in ("ge", "gt") if b in meta]
    high = [(b, meta[b]) for b in ("le", "lt") if b in meta]
    if low and high:
        (lb, lv), (hb, hv) = low[0], high[0]
        return f"in {'[' if lb == 'ge' else '('}{_num(lv)}, {_num(hv)}{']' if hb == 'le' else ')'}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{symbols[b]} {_num(v)}" for b, v in low + high)


def _num(value: float) -> str:
    return f"{value:g}"


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    checks = {"ge": value >= meta.get("ge", -math.inf), "gt": value > meta.get("gt", -math.inf),
              "le": value <= meta.get("le", math.inf), "lt": value < meta.get("lt", math.inf)}
    return all(checks[b] for b in _BOUNDS if b in meta)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def nested_schema(annotation: Any) -> type | None:
    """The dataclass an annotation names (directly or as Optional[...]), or None."""
    if is_dataclass(annotation):
        return annotation  # type: ignore[return-value]
    if get_origin(annotation) is Union:
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1 and is_dataclass(inner[0]):
            return inner[0]  # type: ignore[return-value]
    return None


def range_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    """`must be > 0, got -1` when a number (or a number of a list) is outside the declared bounds, else None."""
    bounds = {b: meta[b] for b in _BOUNDS if b in meta}
    if not bounds:
        return None
    for number in value if isinstance(value, (list, tuple)) else [value]:
        if not _is_number(number):
            continue  # types are OmegaConf's to check
        if (isinstance(number, float) and not math.isfinite(number)) or not _in_range(number, bounds):
            return f"must be {range_text(bounds)}, got {value!r}"
    return None


def check_value(path: str, value: Any, meta: Mapping[str, Any]) -> None:
    """Refuse a value outside its declared range or set (None passes: Optional keys use it for 'off')."""
    if value is None or (isinstance(value, str) and "${" in value):
        return
    if isinstance(value, float) and not math.isfinite(value):
        fail(path, f"must be a finite number, got {value}")  # lr=inf or nan would train on garbage
    if "choices" in meta:
        if str(value) not in meta["choices"]:
            fail(path, f"'{value}' is not one of: {', '.join(meta['choices'])}")
        return
    if isinstance(value, Mapping):  # e.g. {task: weight}: each value
        for name, item in value.items():
            check_value(f"{path}.{name}", item, meta)
        return
    problem = range_problem(value, meta)
    if problem:
        fail(path, problem)


def check_section(values: Mapping[str, Any], schema: type, prefix: str) -> None:
    """Check every key of `values` (a plain, resolved mapping) against the ranges declared on `schema`."""
    hints = get_type_hints(schema)
    for f in fields(schema):
        if f.name not in values:
            continue
        value = values[f.name]
        path = f"{prefix}.{f.name}" if prefix else f.name
        inner = nested_schema(hints[f.name])
        if inner is not None and isinstance(value, Mapping):
            check_section(value, inner, path)
        else:
            check_value(path, value, f.metadata)


def schema_fields(schema: type, prefix: str = "") -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """Every leaf key of a schema as `dotted.path -> (annotation, metadata)` (for `explain` and the drift test)."""
    out: dict[str, tuple[Any, Mapping[str, Any]]] = {}
    hints = get_type_hints(schema)
    for f in fields(schema):
        path = f"{prefix}.{f.name}" if prefix else f.name
        inner = nested_schema(hints[f.name])
        if inner is not None:
            out.update(schema_fields(inner, path))
        else:
            out[path] = (hints[f.name], f.metadata)
    return out


def type_text(annotation: Any) -> str:
    """`float`, `int | null`, `list[int]` -- a type as a YAML user reads it."""
    if annotation is type(None):
        return "null"
    if get_origin(annotation) is Union:
        return " | ".join(type_text(a) for a in get_args(annotation))
    if get_origin(annotation) is not None:
        args = ", ".join(type_text(a) for a in get_args(annotation))
        return f"{getattr(get_origin(annotation), '__name__', str(get_origin(annotation)))}[{args}]"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


__all__ = ["check_section", "check_value", "fail", "has_default", "key", "nested_schema", "range_problem",
           "range_text", "schema_fields", "type_text"]

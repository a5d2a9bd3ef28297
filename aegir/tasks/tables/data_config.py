"""``task.data`` of the CTA/CPA tasks, declared in a module that imports neither torch nor pandas: the config check
(aegir/config) reads it on every `run.py` start, and a config error must answer in well under two seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Optional

from aegir.errors import InputError
from aegir.schema import key, range_problem

if TYPE_CHECKING:
    from aegir.tasks.tables.serialize import SerializeBudget

# The SOTAB v2 ground-truth variants (aegir/tasks/tables/sotab.py reads their files).
TRAIN_SETS: tuple[str, ...] = ("training", "training_small")
TEST_SETS: tuple[str, ...] = ("test", "random", "corner_cases", "missing_values", "format_heterogeneity")

SOURCES: tuple[str, ...] = ("synthetic", "sotab")


@dataclass
class TablesDataConfig:
    """``task.data`` of the CTA/CPA tasks (aegir/config/schema.py registers it); conf/task/cta.yaml holds each key's
    default and meaning. Budgets are in token ids (one per UTF-8 byte, one per special token); see
    aegir/tasks/tables/serialize.py.
    """

    source: str
    root: Optional[str]
    n_tables: int = key(ge=1)
    max_tables: Optional[int] = key(ge=1)
    val_fraction: float = key(ge=0.0, lt=1.0)
    test_fraction: float = key(ge=0.0, lt=1.0)
    sotab_train_set: str
    sotab_test_set: str
    sotab_carve: list[str]
    max_rows: int = key(ge=1)
    target_bytes: int
    per_column_bytes: int
    total_bytes: int
    value_bytes: int
    n_context_columns: int = key(ge=0)
    mmr_lambda: float = key(ge=0.0, le=1.0)
    ngram_sizes: list[int]
    hash_dim: int
    include_headers: bool

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], prefix: str = "task.data") -> "TablesDataConfig":
        """Build from a plain mapping or an OmegaConf node; unknown keys and wrong types are InputErrors."""
        try:
            from omegaconf import OmegaConf

            if OmegaConf.is_config(data):
                data = OmegaConf.to_container(data, resolve=True)  # type: ignore[assignment]
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in dict(data).items():
            if name not in known:
                raise InputError(f"{prefix}.{name}: unknown key (allowed: {', '.join(known)})")
            values[name] = _coerce(f"{prefix}.{name}", name, value)
        missing = [name for name in known if name not in values]
        if missing:
            raise InputError(f"{prefix}.{missing[0]}: missing (conf/task/cta.yaml holds every key's default)")
        config = cls(**values)
        problems = config.problems()
        if problems:
            raise InputError(f"{prefix}.{problems[0]}")
        return config

    def problems(self) -> list[str]:
        """``key: reason`` for each invalid value (empty when the config is usable)."""
        out = []
        if self.source not in SOURCES:
            out.append(f"source: must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "sotab" and not self.root:
            out.append("root: required when source=sotab (the directory of the unpacked SOTAB v2 files)")
        for f in fields(self):  # the ranges declared above
            problem = range_problem(getattr(self, f.name), f.metadata)
            if problem:
                out.append(f"{f.name}: {problem}")
        if self.val_fraction + self.test_fraction >= 1.0:
            out.append(f"val_fraction: val_fraction + test_fraction must be < 1, got "
                       f"{self.val_fraction + self.test_fraction}")
        if self.sotab_train_set not in TRAIN_SETS:
            out.append(f"sotab_train_set: must be one of {', '.join(TRAIN_SETS)}, got {self.sotab_train_set!r}")
        if self.sotab_test_set not in TEST_SETS:
            out.append(f"sotab_test_set: must be one of {', '.join(TEST_SETS)}, got {self.sotab_test_set!r}")
        if not isinstance(self.sotab_carve, list) or any(split not in ("val", "test") for split in self.sotab_carve):
            out.append(f"sotab_carve: must be a list of val and/or test, got {self.sotab_carve!r}")
        if not self.ngram_sizes or any(n < 1 or n > 16 for n in self.ngram_sizes):
            out.append(f"ngram_sizes: must be a non-empty list of sizes in 1..16, got {self.ngram_sizes}")
        if self.hash_dim < 1 or self.hash_dim & (self.hash_dim - 1):
            out.append(f"hash_dim: must be a power of two, got {self.hash_dim}")
        out += self.budget().problems()
        return out

    def budget(self) -> SerializeBudget:
        from aegir.tasks.tables.serialize import SerializeBudget  # imports the tokenizer, hence torch

        return SerializeBudget(self.target_bytes, self.per_column_bytes, self.total_bytes, self.value_bytes,
                               self.include_headers)


def _coerce(key: str, name: str, value: Any) -> Any:
    """Check a config value against the type of field ``name`` (``key`` is its dotted path, for the message)."""
    int_fields = {"n_tables", "max_tables", "max_rows", "target_bytes", "per_column_bytes", "total_bytes",
                  "value_bytes", "n_context_columns", "hash_dim"}
    if name in int_fields:
        if value is None and name == "max_tables":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{key}: must be an integer, got {value!r}")
        return value
    if name in ("val_fraction", "test_fraction", "mmr_lambda"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{key}: must be a number, got {value!r}")
        return float(value)
    if name == "include_headers":
        if not isinstance(value, bool):
            raise InputError(f"{key}: must be true or false, got {value!r}")
        return value
    if name == "ngram_sizes":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
            raise InputError(f"{key}: must be a list of integers, got {value!r}")
        return list(value)
    if name == "sotab_carve":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{key}: must be a list of val and/or test, got {value!r}")
        return list(value)
    if value is None and name == "root":
        return None
    if not isinstance(value, str):
        raise InputError(f"{key}: must be a string, got {value!r}")
    return value

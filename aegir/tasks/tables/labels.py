"""The label map of the synthetic generator, read from the package data file ``sotab_labels.json``.

Why a data file: the map (entity type -> columns -> CTA label, CPA property, value generator, presence
probability) is the generator's *content*, reviewed and extended without touching code; the file's ``about``
field documents every key. This module parses it into small frozen dataclasses and checks it once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

LABELS_FILE = "sotab_labels.json"


@dataclass(frozen=True)
class ColumnSpec:
    """One column an entity table may carry."""

    header: str
    label: str | None  # CTA label; None = an unlabelled column (context only)
    property: str | None  # CPA property from the main column; None for the main column itself
    gen: str  # value generator name (aegir.tasks.tables.synthetic.GENERATORS)
    p: float  # probability that a table of this entity has the column
    args: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class EntitySpec:
    """An entity type (SOTAB topic): its main (subject) column and optional columns."""

    name: str
    weight: float  # relative frequency among generated tables
    main: ColumnSpec
    columns: tuple[ColumnSpec, ...]


@dataclass(frozen=True)
class LabelMap:
    """The parsed label file."""

    entities: dict[str, EntitySpec]
    sotab_cta_vocabulary_v1: tuple[str, ...]
    not_generated: dict[str, str]

    @property
    def cta_labels(self) -> list[str]:
        """Sorted CTA labels the generator can produce."""
        return sorted({spec.label for entity in self.entities.values() for spec in (entity.main, *entity.columns)
                       if spec.label})

    @property
    def cpa_labels(self) -> list[str]:
        """Sorted CPA properties the generator can produce."""
        return sorted({spec.property for entity in self.entities.values() for spec in entity.columns
                       if spec.property})

    def labels(self, kind: str) -> list[str]:
        return self.cta_labels if kind == "cta" else self.cpa_labels


def _column(raw: dict[str, Any], where: str) -> ColumnSpec:
    try:
        spec = ColumnSpec(header=str(raw["header"]), label=raw["label"], property=raw["property"],
                          gen=str(raw["gen"]), p=float(raw["p"]), args=dict(raw.get("args", {})))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{LABELS_FILE}: {where}: bad column spec {raw!r} ({error})") from None
    if not 0.0 <= spec.p <= 1.0:
        raise ValueError(f"{LABELS_FILE}: {where}: p must be in [0, 1], got {spec.p}")
    return spec


def parse_label_map(data: dict[str, Any]) -> LabelMap:
    """Parse the JSON document (raises ValueError naming the entity and column of a malformed entry)."""
    entities: dict[str, EntitySpec] = {}
    for name, raw in data["entities"].items():
        if "_" in name:
            raise ValueError(f"{LABELS_FILE}: entity {name!r}: names must not contain '_' (table-name separator)")
        main = _column(raw["main"], f"{name}.main")
        if main.property is not None or main.label is None:
            raise ValueError(f"{LABELS_FILE}: {name}.main must have a label and no property")
        columns = tuple(_column(column, f"{name}.columns[{i}]") for i, column in enumerate(raw["columns"]))
        headers = [main.header, *(column.header for column in columns)]
        if len(set(headers)) != len(headers):
            raise ValueError(f"{LABELS_FILE}: {name}: duplicate headers")
        entities[name] = EntitySpec(name, float(raw.get("weight", 1.0)), main, columns)
    return LabelMap(entities, tuple(data.get("sotab_cta_vocabulary_v1", ())), dict(data.get("not_generated", {})))


@lru_cache(maxsize=1)
def load_label_map() -> LabelMap:
    """The label map shipped with the package (parsed once per process)."""
    text = resources.files("aegir.tasks.tables").joinpath(LABELS_FILE).read_text(encoding="utf-8")
    return parse_label_map(json.loads(text))

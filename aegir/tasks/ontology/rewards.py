"""The ontology verifier as registered reward components (usable in any reward config, see conf/reward/ontology.yaml):

    onto_structural   R_A, 0 or 1: the gate (``reward.gate: onto_structural``)
    onto_consistency  R_B (weight 0.50)
    onto_parsimony    R_C (weight 0.05)
    onto_coverage     R_D (weight 0.45)

Each returns None for a record without a footprint (another task's prompt). The catalog a record is scored
against is, in order: ``record["catalog_file"]`` (set by the hot-reload watcher to the immutable copy
``<run dir>/catalogs/<version>.yaml``, together with ``catalog_sha256``), ``record["catalog"]`` (the task's
``task.catalog``), else the shipped catalog. Catalogs are cached per process by content hash, so every reward
worker switches to a new version on the first record that carries it: the next rollout after an edit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from aegir.rl.rewards import register_reward
from aegir.tasks.ontology.catalog import Catalog, default_catalog, load_catalog
from aegir.tasks.ontology.verifier import Verdict, verify

_CATALOGS: dict[str, Catalog] = {}
_VERDICTS: OrderedDict[tuple[str, str, str], Verdict] = OrderedDict()
_MAX_VERDICTS = 4096


def record_catalog(record: Mapping[str, Any]) -> Catalog:
    """The catalog this record is scored against (see the module docstring)."""
    path = record.get("catalog_file") or record.get("catalog")
    if not path:
        return default_catalog()
    key = str(record.get("catalog_sha256") or path)
    if key not in _CATALOGS:
        _CATALOGS[key] = load_catalog(path)
    return _CATALOGS[key]


def verdict(record: Mapping[str, Any], completion: str) -> Verdict | None:
    """The verifier's verdict (cached: the four components of one completion share one verification)."""
    footprint = record.get("footprint")
    if not isinstance(footprint, Mapping):
        return None
    catalog = record_catalog(record)
    key = (catalog.sha256, str(record.get("id")) + repr(footprint), completion)
    cached = _VERDICTS.get(key)
    if cached is None:
        cached = verify(catalog, footprint, completion)
        _VERDICTS[key] = cached
        if len(_VERDICTS) > _MAX_VERDICTS:
            _VERDICTS.popitem(last=False)
    return cached


@register_reward("onto_structural")
def onto_structural(record: Mapping[str, Any], completion: str) -> float | None:
    v = verdict(record, completion)
    return None if v is None else v.structural


@register_reward("onto_consistency")
def onto_consistency(record: Mapping[str, Any], completion: str) -> float | None:
    v = verdict(record, completion)
    return None if v is None else v.consistency


@register_reward("onto_parsimony")
def onto_parsimony(record: Mapping[str, Any], completion: str) -> float | None:
    v = verdict(record, completion)
    return None if v is None else v.parsimony


@register_reward("onto_coverage")
def onto_coverage(record: Mapping[str, Any], completion: str) -> float | None:
    v = verdict(record, completion)
    return None if v is None else v.coverage

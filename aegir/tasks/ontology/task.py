"""The `ontology` task of a run: prompt/reference records over generated footprints, split by footprint, with a
fixed hashed eval set (docs/ontology.md, "Records").

Record::

    {"id": "ontology/0/17", "task": "ontology",
     "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "<DDL>"}],
     "reference": "<composition>",            # what SFT trains on and what scores 1.0
     "footprint": {"tables": [...]},          # tables, columns, datatypes, foreign keys: what the verifier checks
     "footprint_key": "Review(url,...)",      # the hidden catalog subset; the unit of the train/eval split
     "catalog": null | "PATH"}                # the catalog it was generated from (null = the shipped one)
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from aegir.config.schema import OntologyTaskConfig
from aegir.errors import InputError
from aegir.tasks.ontology.catalog import Catalog, catalog_for
from aegir.tasks.ontology.footprint import generate_footprint

# Short on purpose (a byte-level policy reads it with every prompt); docs/ontology.md has the full grammar.
SYSTEM = "Map the tables onto the catalog: class C < Parent = table / prop C.p : Datatype|-> Class = table.column"


@dataclass
class OntologyData:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    catalog: Catalog
    provenance: dict[str, Any] = field(default_factory=dict)


def build_records(catalog: Catalog, data_seed: int, n_records: int, max_columns: int,
                  catalog_path: str | None = None) -> list[dict[str, Any]]:
    """`n_records` records; record i depends only on (catalog, data_seed, i)."""
    records = []
    for index in range(n_records):
        generated = generate_footprint(catalog, random.Random(f"aegir-ontology:{data_seed}:{index}"), max_columns)
        records.append({
            "id": f"ontology/{data_seed}/{index}", "task": "ontology",
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": generated.ddl}],
            "reference": generated.reference, "footprint": generated.footprint.to_dict(),
            "footprint_key": generated.spec.key, "catalog": catalog_path,
        })
    return records


def _rank(data_seed: int, purpose: str, key: str) -> str:
    return hashlib.sha256(f"{data_seed}:{purpose}:{key}".encode()).hexdigest()


def split_by_footprint(records: Sequence[dict[str, Any]], data_seed: int, eval_fraction: float
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held out): the first `round(eval_fraction * n_footprints)` footprints in seeded hash order are held
    out with every record that has them, so no footprint is on both sides (whatever its noise)."""
    keys = sorted({r["footprint_key"] for r in records}, key=lambda k: _rank(data_seed, "split", k))
    held = set(keys[: round(eval_fraction * len(keys))])
    return ([r for r in records if r["footprint_key"] not in held], [r for r in records if r["footprint_key"] in held])


def fixed_eval_set(held_out: Sequence[dict[str, Any]], n_eval: int, data_seed: int
                   ) -> tuple[list[dict[str, Any]], str]:
    """`n_eval` held-out records, one per footprint, chosen by data_seed only; and the sha256 of their JSON."""
    by_key: dict[str, dict[str, Any]] = {}
    for record in sorted(held_out, key=lambda r: _rank(data_seed, "eval", r["id"])):
        by_key.setdefault(record["footprint_key"], record)
    chosen = sorted(by_key.values(), key=lambda r: _rank(data_seed, "eval_set", r["id"]))[:n_eval]
    if len(chosen) < n_eval:
        raise InputError(f"config error: task.n_eval: only {len(chosen)} held-out footprints for {n_eval} eval "
                         f"records; raise task.n_records or task.eval_fraction")
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()
    return chosen, digest


def prepare_ontology(task: OntologyTaskConfig, data_seed: int) -> OntologyData:
    catalog_path = task.catalog or None
    catalog = catalog_for(catalog_path)
    records = build_records(catalog, data_seed, task.n_records, task.max_columns,
                            str(catalog_path) if catalog_path else None)
    train, held_out = split_by_footprint(records, data_seed, task.eval_fraction)
    eval_records, eval_hash = fixed_eval_set(held_out, task.n_eval, data_seed)
    provenance = {"ontology": {"catalog": catalog.source, "catalog_sha256": catalog.sha256,
                               "n_records": len(records), "n_train": len(train), "n_eval": len(eval_records),
                               "n_footprints": len({r["footprint_key"] for r in records}),
                               "eval_sha256": eval_hash}}
    return OntologyData(train, eval_records, catalog, provenance)

"""Pretraining ids from serialized synthetic web tables (`task.data.source=tables`), for backbones that will be
fine-tuned on column annotation (CTA / CPA).

Why: the data-product corpus (`source=synthetic`) teaches prose, DDL and rows, but not the byte format a CTA model
reads -- ``[CLS] target: v1 | v2 [SEP] context: ... [SEP]`` with web-table values. Next-byte prediction on that
format is where a small byte LM learns what dates, prices, phone numbers or postal codes look like, without any
label, which is the representation a classification head can then separate.

No leakage into the downstream evaluation: the tables are generated from a seed *derived* from data_seed
(`pretrain_tables_seed`), so they are other tables than the CTA/CPA train/val/test tables generated from data_seed
itself -- same generator, same distribution of sites and values, like an unlabelled crawl of the same web. Labels are
never used; only the examples' ids are concatenated (each starts with [CLS], which marks the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from aegir.config.groups import group_defaults
from aegir.tasks.tables.dataset import build_column_dataset

# Added to data_seed for the pretraining tables: a large prime, so no plausible data_seed of a downstream run
# generates the same tables.
TABLES_SEED_OFFSET = 1_000_003
# Serialization budgets of the pretraining examples: GPU-sized (512 ids; conf/task/cta.yaml's are CPU-sized), so a
# backbone pretrained here has seen every length a CTA run may use.
PRETRAIN_BUDGETS = {"total_bytes": 512, "target_bytes": 160, "per_column_bytes": 48}


def pretrain_tables_seed(data_seed: int) -> int:
    return int(data_seed) + TABLES_SEED_OFFSET


@dataclass
class TablesCorpus:
    train: torch.Tensor  # 1-D long ids (bytes + [CLS]/[SEP]) of the training tables' serialized columns
    val: torch.Tensor  # the same for the held-out tables
    provenance: dict[str, Any] = field(default_factory=dict)


def _concat(examples: list[Any]) -> torch.Tensor:
    if not examples:
        return torch.empty(0, dtype=torch.long)
    return torch.cat([torch.as_tensor(example.ids, dtype=torch.long) for example in examples])


def build_tables_corpus(n_tables: int, data_seed: int, val_fraction: float) -> TablesCorpus:
    """`n_tables` synthetic tables, split by table (val_fraction held out), serialized as CTA examples
    (conf/task/cta.yaml's settings with PRETRAIN_BUDGETS) and concatenated per split."""
    seed = pretrain_tables_seed(data_seed)
    data = build_column_dataset({"data": {**group_defaults("task", "cta")["data"], **PRETRAIN_BUDGETS,
                                          "n_tables": int(n_tables), "val_fraction": float(val_fraction),
                                          "test_fraction": 0.0}}, seed, "cta")
    train, val = _concat(data.train), _concat(data.val)
    tables = data.provenance["tables"]
    provenance = {"source": "tables", "data_seed": data_seed, "tables_seed": seed, "n_tables": int(n_tables),
                  "sha256": tables["examples_sha256"], "tables_sha256": tables["sha256"],
                  "n_examples": {"train": len(data.train), "val": len(data.val)}, "arm": "n/a (tables)"}
    return TablesCorpus(train, val, provenance)

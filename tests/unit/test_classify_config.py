"""CTA / CPA configuration: schemas, one-line errors naming the key, and the `tables` pretraining source."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from aegir.config import validate
from aegir.errors import InputError
from aegir.tasks.pretrain.tables_source import pretrain_tables_seed
from aegir.tasks.pretrain.task import prepare_pretrain_data
from aegir.tasks.tables.dataset import build_column_dataset
from tests.conftest import tables_data
from aegir.tokenizer import CLS_ID, SEP_ID

CTA = ["task=cta", "algo=classify", "objective.metric=val/macro_f1", "objective.mode=max"]


def test_cta_and_cpa_compose_with_documented_defaults(compose) -> None:
    for task in ("cta", "cpa"):
        cfg = validate(compose([*CTA, f"task={task}"], fast=False))
        assert cfg.task.name == task and cfg.algo.name == "classify" and cfg.algo.pooling == "mean"
        assert cfg.task.data.source == "synthetic" and cfg.task.data.total_bytes == 256
        assert cfg.algo.liveness.knn_k == 10 and cfg.callbacks.checkpoint.monitor == "val/macro_f1"


@pytest.mark.parametrize("overrides,key,fragment", [
    (["task=cta"], "algo", "task cta trains with algo=classify, not algo=lm"),
    ([*CTA, "algo.pooling=first"], "algo.pooling", "'first' is not one of: mean, max, last, mean_last, cls_last"),
    ([*CTA, "algo.class_weighting=inverse"], "algo.class_weighting", "not one of: none, balanced, sqrt"),
    ([*CTA, "algo.backbone_init=warm"], "algo.backbone_init", "not one of: auto, pretrained, scratch"),
    ([*CTA, "objective.metric=grpo/kl"], "objective.metric", "e.g. objective.metric=val/macro_f1"),
    ([*CTA, "task.data.total_bytes=5"], "task.data.total_bytes", "must be >= 19"),
    ([*CTA, "task.data.source=sotab"], "task.data.root", "required when source=sotab"),
    ([*CTA, "task.data.source=files"], "task.data.source", "must be one of synthetic, sotab"),
    ([*CTA, "+task.data.n_docs=3"], "task.data.n_docs", "allowed keys here: hash_dim, include_headers"),
    ([*CTA, "algo.liveness.knn_k=ten"], "algo.liveness.knn_k", "could not be converted to Integer"),
])
def test_bad_cta_values_fail_with_one_line_naming_the_key(compose, overrides: list[str], key: str,
                                                          fragment: str) -> None:
    with pytest.raises(InputError) as info:
        validate(compose(overrides, fast=False))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"config error: {key}:"), message
    assert fragment in message, message


def test_tables_pretraining_source_reads_other_tables_than_the_task() -> None:
    task = OmegaConf.create({"data": {"source": "tables", "path": None, "n_documents": 30, "val_fraction": 0.2},
                             "seq_len": 64, "batch_size": 4, "val_windows": 4, "val_batch_size": 4,
                             "heldout_classes": 0})
    data = prepare_pretrain_data(task, arm="full", data_seed=3)
    corpus = data.provenance["corpus"]
    assert corpus["source"] == "tables" and corpus["tables_seed"] == pretrain_tables_seed(3) != 3
    assert corpus["n_examples"]["train"] > corpus["n_examples"]["val"] > 0
    assert data.train[0] == CLS_ID and bool((data.train == SEP_ID).any())  # the CTA serialization, specials kept
    assert int(data.train.max()) < 264 and data.val_windows.shape == (4, 65)
    downstream = build_column_dataset({"data": tables_data(n_tables=30)}, 3, "cta")
    assert corpus["tables_sha256"] != downstream.provenance["tables"]["sha256"]
    again = prepare_pretrain_data(task, arm="full", data_seed=3)  # a pure function of data_seed
    assert torch.equal(again.train, data.train) and again.provenance == data.provenance


def test_pretrain_task_names_its_sources() -> None:
    task = OmegaConf.create({"data": {"source": "sotab", "path": None, "n_documents": 3, "val_fraction": 0.2},
                             "seq_len": 64, "val_windows": 4, "heldout_classes": 0})
    with pytest.raises(InputError, match="not one of: synthetic, files, tables"):
        prepare_pretrain_data(task, arm="full", data_seed=0)

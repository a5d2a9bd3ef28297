"""The `pretrain` task: the bytes a run trains and validates on, and their provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from aegir.errors import InputError
from aegir.rundir import sha256_bytes
from aegir.tasks.ontology.catalog import catalog_for
from aegir.tasks.pretrain.corpus import Corpus, build_corpus, load_user_corpus
from aegir.tasks.pretrain.windows import validation_windows
from aegir.tokenizer import bytes_to_tensor


@dataclass
class PretrainData:
    train: torch.Tensor                 # all training bytes, 1-D long
    val_windows: torch.Tensor           # [n, seq_len + 1] fixed validation windows
    provenance: dict[str, Any] = field(default_factory=dict)


def prepare_pretrain_data(task_cfg: Mapping[str, Any], arm: str, data_seed: int) -> PretrainData:
    """Generate (synthetic) or load (files) the corpus, cut the validation windows, hash both."""
    data_cfg = task_cfg["data"]
    seq_len = int(task_cfg["seq_len"])
    if data_cfg["source"] == "tables":
        return _tables_data(task_cfg, data_seed)
    if data_cfg["source"] == "synthetic":
        catalog = catalog_for(task_cfg.get("catalog"))
        corpus: Corpus = build_corpus(data_seed=data_seed, n_documents=int(data_cfg["n_documents"]), arm=arm,
                                      val_fraction=float(data_cfg["val_fraction"]), catalog=catalog)
        origin: dict[str, Any] = {"source": "synthetic", "data_seed": data_seed, "arm": arm,
                                  "n_documents": int(data_cfg["n_documents"]),
                                  "catalog": catalog.source, "catalog_sha256": catalog.sha256}
    elif data_cfg["source"] == "files":
        if not data_cfg.get("path"):
            raise InputError("config error: task.data.path: required when task.data.source=files")
        corpus = load_user_corpus(data_cfg["path"], val_fraction=float(data_cfg["val_fraction"]), seed=data_seed)
        origin = {"source": "files", "path": str(data_cfg["path"]), "arm": "n/a (user files)"}
    else:
        raise InputError(f"config error: task.data.source: '{data_cfg['source']}' is not one of: synthetic, files, "
                         f"tables (the pretrain task's sources)")
    for split, blob in (("training", corpus.train), ("validation", corpus.val)):
        if len(blob) < seq_len + 2:
            raise InputError(f"task.data: the {split} split has {len(blob)} bytes, fewer than one window of "
                             f"task.seq_len + 1 = {seq_len + 1}; add documents or lower task.seq_len")
    train = bytes_to_tensor(corpus.train)
    windows = validation_windows(bytes_to_tensor(corpus.val), seq_len, int(task_cfg["val_windows"]))
    provenance = {
        "corpus": {**origin, "sha256": corpus.sha256, "train_bytes": len(corpus.train),
                   "val_bytes": len(corpus.val)},
        "val_windows": {"n": int(windows.shape[0]), "seq_len": seq_len,
                        "sha256": sha256_bytes(windows.to(torch.int16).numpy().tobytes())},
    }
    return PretrainData(train=train, val_windows=windows, provenance=provenance)


def _tables_data(task_cfg: Mapping[str, Any], data_seed: int) -> PretrainData:
    """`source: tables`: serialized synthetic web tables (aegir/tasks/pretrain/tables_source.py); n_documents is the
    number of tables and val_fraction the share of them held out."""
    from aegir.tasks.pretrain.tables_source import build_tables_corpus

    data_cfg, seq_len = task_cfg["data"], int(task_cfg["seq_len"])
    corpus = build_tables_corpus(int(data_cfg["n_documents"]), data_seed, float(data_cfg["val_fraction"]))
    for split, ids in (("training", corpus.train), ("validation", corpus.val)):
        if ids.numel() < seq_len + 2:
            raise InputError(f"task.data: the {split} split of the tables corpus has {ids.numel()} ids, fewer than "
                             f"one window of task.seq_len + 1 = {seq_len + 1}; raise task.data.n_documents (tables)")
    windows = validation_windows(corpus.val, seq_len, int(task_cfg["val_windows"]))
    provenance = {
        "corpus": {**corpus.provenance, "train_bytes": int(corpus.train.numel()), "val_bytes": int(corpus.val.numel())},
        "val_windows": {"n": int(windows.shape[0]), "seq_len": seq_len,
                        "sha256": sha256_bytes(windows.to(torch.int16).numpy().tobytes())},
    }
    return PretrainData(train=corpus.train, val_windows=windows, provenance=provenance)

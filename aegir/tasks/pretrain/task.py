"""The `pretrain` task: the bytes a run trains and validates on, and their provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from aegir.config.schema import PretrainTaskConfig
from aegir.errors import InputError
from aegir.rundir import sha256_bytes
from aegir.tasks.ontology.catalog import catalog_for
from aegir.tasks.pretrain.corpus import Corpus, build_corpus, heldout_class_names, load_user_corpus
from aegir.tasks.pretrain.instrument import EVAL_FIRST_DOCUMENT, Instrument, build_instrument
from aegir.tasks.pretrain.windows import validation_windows
from aegir.tokenizer import bytes_to_tensor


@dataclass
class PretrainData:
    train: torch.Tensor                 # all training bytes, 1-D long
    val_windows: torch.Tensor           # [n, seq_len + 1] fixed validation windows
    provenance: dict[str, Any] = field(default_factory=dict)
    instrument: Instrument | None = None  # the fixed cross-arm eval set and probes (synthetic corpora only)


def prepare_pretrain_data(task: PretrainTaskConfig, arm: str, data_seed: int) -> PretrainData:
    """Generate (synthetic) or load (files) the corpus, cut the validation windows, hash both."""
    data, seq_len = task.data, task.seq_len
    if task.heldout_classes and data.source != "synthetic":
        raise InputError(f"config error: task.heldout_classes: only the synthetic corpus has catalog classes to hold "
                         f"out; got {task.heldout_classes} with task.data.source={data.source}")
    if data.source == "tables":
        return _tables_data(task, data_seed)
    if data.source == "synthetic":
        catalog = catalog_for(task.catalog)
        corpus: Corpus = build_corpus(data_seed=data_seed, n_documents=data.n_documents, arm=arm,
                                      val_fraction=data.val_fraction, catalog=catalog,
                                      heldout_classes=task.heldout_classes)
        origin: dict[str, Any] = {"source": "synthetic", "data_seed": data_seed, "arm": arm,
                                  "n_documents": data.n_documents,
                                  "catalog": catalog.source, "catalog_sha256": catalog.sha256,
                                  "heldout_classes": list(heldout_class_names(catalog, data_seed,
                                                                              task.heldout_classes))}
    elif data.source == "files":
        if not data.path:
            raise InputError("config error: task.data.path: required when task.data.source=files")
        corpus = load_user_corpus(data.path, val_fraction=data.val_fraction, seed=data_seed)
        origin = {"source": "files", "path": str(data.path), "arm": "n/a (user files)"}
    else:  # the schema refuses other sources; this guards direct callers
        raise InputError(f"config error: task.data.source: '{data.source}' is not one of: synthetic, files, "
                         f"tables (the pretrain task's sources)")
    for split, blob in (("training", corpus.train), ("validation", corpus.val)):
        if len(blob) < seq_len + 2:
            raise InputError(f"task.data: the {split} split has {len(blob)} bytes, fewer than one window of "
                             f"task.seq_len + 1 = {seq_len + 1}; add documents or lower task.seq_len")
    train = bytes_to_tensor(corpus.train)
    windows = validation_windows(bytes_to_tensor(corpus.val), seq_len, task.val_windows)
    provenance = {
        "corpus": {**origin, "sha256": corpus.sha256, "train_bytes": len(corpus.train),
                   "val_bytes": len(corpus.val)},
        "val_windows": {"n": int(windows.shape[0]), "seq_len": seq_len,
                        "sha256": sha256_bytes(windows.to(torch.int16).numpy().tobytes())},
    }
    instrument = None
    if data.source == "synthetic" and (task.eval_windows or task.probe_items):
        if data.n_documents > EVAL_FIRST_DOCUMENT:
            raise InputError(f"config error: task.data.n_documents: at most {EVAL_FIRST_DOCUMENT} with the cross-arm "
                             f"eval instrument (its documents are numbered from there); got {data.n_documents}")
        instrument = build_instrument(data_seed, catalog, seq_len, task.eval_windows, task.probe_items,
                                      task.heldout_classes)
        provenance.update(instrument.provenance)
    return PretrainData(train=train, val_windows=windows, provenance=provenance, instrument=instrument)


def _tables_data(task: PretrainTaskConfig, data_seed: int) -> PretrainData:
    """`source: tables`: serialized synthetic web tables (aegir/tasks/pretrain/tables_source.py); n_documents is the
    number of tables and val_fraction the share of them held out."""
    from aegir.tasks.pretrain.tables_source import build_tables_corpus

    seq_len = task.seq_len
    corpus = build_tables_corpus(task.data.n_documents, data_seed, task.data.val_fraction)
    for split, ids in (("training", corpus.train), ("validation", corpus.val)):
        if ids.numel() < seq_len + 2:
            raise InputError(f"task.data: the {split} split of the tables corpus has {ids.numel()} ids, fewer than "
                             f"one window of task.seq_len + 1 = {seq_len + 1}; raise task.data.n_documents (tables)")
    windows = validation_windows(corpus.val, seq_len, task.val_windows)
    provenance = {
        "corpus": {**corpus.provenance, "train_bytes": int(corpus.train.numel()), "val_bytes": int(corpus.val.numel())},
        "val_windows": {"n": int(windows.shape[0]), "seq_len": seq_len,
                        "sha256": sha256_bytes(windows.to(torch.int16).numpy().tobytes())},
    }
    return PretrainData(train=corpus.train, val_windows=windows, provenance=provenance)

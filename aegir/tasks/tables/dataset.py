"""Column classification examples (CTA or CPA) with train/val/test splits by table, and their provenance.

    data = build_column_dataset(cfg.task, cfg.data_seed, kind="cta")
    data.labels            # sorted label names; ColumnExample.label indexes this list
    data.train[0].ids      # [CLS_ID, ...bytes..., SEP_ID, ...], len <= task.data.total_bytes
    data.render(data.val[0])
    data.provenance        # {"tables": {source, sha256, counts, ...}} for metadata.json

Pipeline: a :class:`~aegir.tasks.tables.table.TableCorpus` from the generator (``source: synthetic``) or the SOTAB
loader (``source: sotab``); tables cut to ``max_rows``; one similarity vector per column
(:mod:`~aegir.tasks.tables.similarity`); per annotated column, context columns by MMR
(:mod:`~aegir.tasks.tables.mmr`, only columns with content are candidates) and the byte serialization
(:mod:`~aegir.tasks.tables.serialize`).

Splits are by *table* -- no table has examples in two splits, so the model never sees a validation column's
neighbours in training. Synthetic tables are split from ``data_seed`` alone, stratified by entity type (each type
contributes its share of validation and test tables, largest-remainder rounding, tables ranked by a hash of
``(data_seed, name)``): the validation set is fixed for every run seed and every serialization setting. SOTAB
uses its official splits; a missing validation or test file is carved from training the same way.

Label vocabulary: synthetic -- every label the label map can produce for the kind (so index i means the same label
for every ``n_tables``); SOTAB -- the sorted union of the labels in the ground-truth files read.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aegir.errors import InputError
from aegir.tasks.tables.data_config import TablesDataConfig
from aegir.tasks.tables.labels import load_label_map
from aegir.tasks.tables.mmr import select_context_columns
from aegir.tasks.tables.serialize import render, serialize_column
from aegir.tasks.tables.similarity import column_text, cosine_matrix, hashed_ngram_vectors
from aegir.tasks.tables.sotab import load_sotab
from aegir.tasks.tables.synthetic import generate_corpus
from aegir.tasks.tables.table import KINDS, SPLITS, Kind, Split, Table, TableCorpus

@dataclass(frozen=True)
class ColumnExample:
    """One classification example: the serialized column and its label index."""

    ids: list[int]  # token ids: [CLS] ... [SEP], at most total_bytes long
    label: int  # index into ColumnDataset.labels
    table: str  # table name (the split unit)
    column: int  # the target column's index in its table
    main_column: int | None = None  # CPA: the main (subject) column; None for CTA


@dataclass
class ColumnDataset:
    """Splits of one task kind, the label vocabulary and the provenance of the data."""

    kind: Kind
    labels: list[str]
    train: list[ColumnExample]
    val: list[ColumnExample]
    test: list[ColumnExample]
    config: TablesDataConfig
    provenance: dict[str, Any]

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def max_len(self) -> int:
        """Upper bound of every example's length (pad to this for fixed shapes)."""
        return self.config.total_bytes

    def split(self, name: Split) -> list[ColumnExample]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def label_counts(self, name: Split) -> dict[str, int]:
        """Examples per label name in one split (labels without examples are absent)."""
        counts = Counter(example.label for example in self.split(name))
        return {self.labels[index]: counts[index] for index in sorted(counts)}

    def render(self, example: ColumnExample) -> str:
        """Readable form of an example's ids, for samples and debugging."""
        return render(example.ids)


# ----------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------

def _rank(data_seed: int, name: str) -> str:
    return hashlib.sha256(f"aegir.tables.split:{data_seed}:{name}".encode()).hexdigest()


def _quotas(sizes: Mapping[str, int], fraction: float) -> dict[str, int]:
    """Largest-remainder allocation of ``round(fraction * total)`` over groups, proportional to their sizes."""
    total = sum(sizes.values())
    target = int(math.floor(fraction * total + 0.5))
    exact = {group: fraction * size for group, size in sizes.items()}
    quotas = {group: int(math.floor(value)) for group, value in exact.items()}
    leftover = target - sum(quotas.values())
    order = sorted(sizes, key=lambda group: (-(exact[group] - quotas[group]), group))
    for group in order:
        if leftover <= 0:
            break
        if quotas[group] < sizes[group]:
            quotas[group] += 1
            leftover -= 1
    return quotas


def split_tables(topics: Mapping[str, str], data_seed: int, val_fraction: float,
                 test_fraction: float) -> dict[str, Split]:
    """Table name -> split, stratified by topic (entity type); depends only on the names, topics and data_seed."""
    groups: dict[str, list[str]] = {}
    for name, topic in topics.items():
        groups.setdefault(topic, []).append(name)
    sizes = {topic: len(names) for topic, names in groups.items()}
    val_quota = _quotas(sizes, val_fraction)
    test_quota = _quotas({topic: size - val_quota[topic] for topic, size in sizes.items()},
                         test_fraction / (1.0 - val_fraction) if val_fraction < 1.0 else 0.0)
    assignment: dict[str, Split] = {}
    for topic, names in groups.items():
        ranked = sorted(names, key=lambda name: _rank(data_seed, name))
        n_val, n_test = val_quota[topic], test_quota[topic]
        for position, name in enumerate(ranked):
            assignment[name] = "val" if position < n_val else "test" if position < n_val + n_test else "train"
    return assignment


def _assign_splits(corpus: TableCorpus, names: Sequence[str], config: TablesDataConfig,
                   data_seed: int) -> dict[str, Split]:
    if not corpus.official_split:
        return split_tables({name: corpus.tables[name].topic for name in names}, data_seed, config.val_fraction,
                            config.test_fraction)
    assignment = {name: corpus.official_split[name] for name in names}
    present = set(assignment.values())
    missing = [split for split in ("val", "test") if split not in present]
    unasked = [split for split in missing if split not in config.sotab_carve]
    if unasked:  # the loader refuses absent files; an official split can still end up without a table
        raise InputError(f"task.data: the SOTAB {unasked[0]} split has no tables; set task.data.sotab_carve="
                         f"[{unasked[0]}] to carve it out of the training tables")
    if missing:
        fractions = {"val": config.val_fraction if "val" in missing else 0.0,
                     "test": config.test_fraction if "test" in missing else 0.0}
        train = {name: corpus.tables[name].topic for name, split in assignment.items() if split == "train"}
        assignment.update(split_tables(train, data_seed, fractions["val"], fractions["test"]))
    return assignment


# ----------------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------------

def _load_corpus(config: TablesDataConfig, data_seed: int, kind: Kind) -> TableCorpus:
    if config.source == "synthetic":
        return generate_corpus(config.n_tables, data_seed)
    return load_sotab(str(config.root), kind, max_rows=config.max_rows, max_tables=config.max_tables,
                      seed=data_seed, train_set=config.sotab_train_set, test_set=config.sotab_test_set,
                      carve=config.sotab_carve)


def _similarity_vectors(tables: Sequence[Table], config: TablesDataConfig) -> tuple[np.ndarray, dict[str, int]]:
    """One vector per column of every table (stacked), and each table's first row in the stack."""
    texts: list[bytes] = []
    offsets: dict[str, int] = {}
    for table in tables:
        offsets[table.name] = len(texts)
        texts += [column_text(column, config.max_rows, config.value_bytes) for column in table.columns]
    return hashed_ngram_vectors(texts, config.ngram_sizes, config.hash_dim), offsets


def _examples_sha256(splits: Mapping[str, Sequence[ColumnExample]]) -> str:
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(f"{name}\n".encode())
        for example in splits[name]:
            digest.update(f"{example.table}\t{example.main_column}\t{example.column}\t{example.label}\t".encode())
            digest.update(array("H", example.ids).tobytes())
    return digest.hexdigest()


def build_column_dataset(task_cfg: Mapping[str, Any], data_seed: int, kind: str) -> ColumnDataset:
    """Build the CTA or CPA dataset described by ``task_cfg`` (the ``task`` section, or its ``data`` mapping).

    Raises InputError for a bad config or bad SOTAB files (one line naming the key, or the file and line).
    """
    if kind not in KINDS:
        raise InputError(f"task kind must be one of {', '.join(KINDS)}, got {kind!r}")
    section = task_cfg.get("data")
    config = TablesDataConfig.from_mapping(section if section is not None and hasattr(section, "items")
                                           else task_cfg)
    corpus = _load_corpus(config, data_seed, kind)  # type: ignore[arg-type]
    annotations = sorted(corpus.labels(kind), key=lambda a: (a.table, getattr(a, "main_column", 0), a.column))
    labels = load_label_map().labels(kind) if config.source == "synthetic" else corpus.label_vocabulary(kind)
    label_index = {label: i for i, label in enumerate(labels)}
    names = sorted({annotation.table for annotation in annotations})
    tables = [corpus.tables[name].head(config.max_rows) for name in names]
    by_name = {table.name: table for table in tables}
    assignment = _assign_splits(corpus, names, config, data_seed)
    vectors, offsets = _similarity_vectors(tables, config)
    budget = config.budget()

    splits: dict[str, list[ColumnExample]] = {name: [] for name in SPLITS}
    similarity: dict[str, list[list[float]]] = {}
    candidates: list[int] = []
    for annotation in annotations:
        table = by_name[annotation.table]
        main = getattr(annotation, "main_column", None)
        if table.name not in similarity:  # annotations are sorted by table: one matrix per table
            start = offsets[table.name]
            similarity = {table.name: cosine_matrix(vectors[start:start + table.n_columns]).tolist()}
            candidates = [c for c in range(table.n_columns) if table.non_empty(c)]
        context = select_context_columns(similarity[table.name], annotation.column, config.n_context_columns,
                                         config.mmr_lambda, candidates, main)
        serialized = serialize_column(table, annotation.column, context, budget, main)
        splits[assignment[table.name]].append(
            ColumnExample(serialized.ids, label_index[annotation.label], table.name, annotation.column, main))

    table_counts = Counter(assignment.values())
    train_labels = {example.label for example in splits["train"]}
    val_labels = {example.label for example in splits["val"]}
    provenance = {"tables": {
        "source": config.source,
        "kind": kind,
        "data_seed": data_seed,
        "root": config.root if config.source == "sotab" else None,
        "sha256": corpus.sha256,
        "examples_sha256": _examples_sha256(splits),
        "n_tables": {name: table_counts.get(name, 0) for name in SPLITS},
        "n_examples": {name: len(splits[name]) for name in SPLITS},
        "n_labels": len(labels),
        "labels_sha256": hashlib.sha256("\n".join(labels).encode()).hexdigest(),
        "labels_without_val_examples": sorted(labels[i] for i in train_labels - val_labels),
        "config": asdict(config),
    }}
    return ColumnDataset(kind, labels, splits["train"], splits["val"], splits["test"], config,  # type: ignore[arg-type]
                         provenance)

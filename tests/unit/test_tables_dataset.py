"""build_column_dataset: splits by table, determinism, a fixed stratified validation set, config errors."""

from __future__ import annotations

from collections import Counter

import pytest

from aegir.errors import InputError
from aegir.tasks.tables.dataset import (
    ColumnDataset,
    TablesDataConfig,
    _quotas,
    build_column_dataset,
    split_tables,
)
from aegir.tasks.tables.labels import load_label_map
from aegir.tokenizer import CLS_ID, SEP_ID
from tests.conftest import tables_data

SMALL = tables_data(n_tables=160, val_fraction=0.15, test_fraction=0.1)


@pytest.fixture(scope="module")
def cta() -> ColumnDataset:
    return build_column_dataset({"name": "cta", "data": SMALL}, 7, "cta")


@pytest.fixture(scope="module")
def cpa() -> ColumnDataset:
    return build_column_dataset({"data": SMALL}, 7, "cpa")


def _tables(data: ColumnDataset, split: str) -> set[str]:
    return {example.table for example in data.split(split)}  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["cta", "cpa"])
def test_splits_are_disjoint_by_table_and_examples_are_well_formed(name: str, request: pytest.FixtureRequest
                                                                   ) -> None:
    data: ColumnDataset = request.getfixturevalue(name)
    train, val, test = (_tables(data, split) for split in ("train", "val", "test"))
    assert train and val and test
    assert not train & val and not train & test and not val & test
    assert data.provenance["tables"]["n_tables"] == {"train": len(train), "val": len(val), "test": len(test)}
    assert len(train | val | test) == SMALL["n_tables"]
    assert data.labels == sorted(data.labels) == load_label_map().labels(name)
    for example in data.train + data.val + data.test:
        assert example.ids[0] == CLS_ID and example.ids[-1] == SEP_ID
        assert len(example.ids) <= data.max_len == 512
        assert 0 <= example.label < data.n_labels
        assert (example.main_column is None) == (name == "cta")
    rendered = data.render(data.val[0])
    assert rendered.startswith("<|cls|>target: ")
    if name == "cpa":
        assert "<|sep|>main: " in rendered


def test_the_same_data_seed_gives_the_same_dataset_and_another_seed_another(cta: ColumnDataset) -> None:
    again = build_column_dataset({"data": SMALL}, 7, "cta")
    assert again.provenance == cta.provenance
    assert [e.ids for e in again.val] == [e.ids for e in cta.val]
    other = build_column_dataset({"data": SMALL}, 8, "cta")
    assert other.provenance["tables"]["sha256"] != cta.provenance["tables"]["sha256"]
    assert other.provenance["tables"]["examples_sha256"] != cta.provenance["tables"]["examples_sha256"]


def test_the_validation_tables_do_not_depend_on_serialization_settings(cta: ColumnDataset) -> None:
    changed = build_column_dataset({"data": {**SMALL, "total_bytes": 256, "mmr_lambda": 1.0, "n_context_columns": 2,
                                             "include_headers": True}}, 7, "cta")
    assert _tables(changed, "val") == _tables(cta, "val") and _tables(changed, "test") == _tables(cta, "test")
    assert changed.provenance["tables"]["sha256"] == cta.provenance["tables"]["sha256"]  # same source data
    assert changed.provenance["tables"]["examples_sha256"] != cta.provenance["tables"]["examples_sha256"]
    assert all(len(e.ids) <= 256 for e in changed.train)
    assert any(" [" in changed.render(e) for e in changed.val)  # header names shown


def test_the_validation_split_is_stratified_by_entity_type(cta: ColumnDataset) -> None:
    topics = Counter(name.split("_", 1)[0] for name in _tables(cta, "train") | _tables(cta, "val")
                     | _tables(cta, "test"))
    val_topics = Counter(name.split("_", 1)[0] for name in _tables(cta, "val"))
    for topic, count in topics.items():
        if count >= 10:
            assert val_topics[topic] >= 1, topic
    assert len(_tables(cta, "val")) == round(0.15 * SMALL["n_tables"])


def test_quotas_and_split_tables_on_hand_sizes() -> None:
    # 10% of 100: 5.0 + 3.5 + 1.5 -> floors 5, 3, 1 (9) -> one more to the larger remainder (B before C by name)
    assert _quotas({"A": 50, "B": 35, "C": 15}, 0.1) == {"A": 5, "B": 4, "C": 1}
    names = {f"{topic}_site_{i}": topic for topic, n in (("A", 50), ("B", 35), ("C", 15)) for i in range(n)}
    split = split_tables(names, 3, 0.1, 0.2)
    counts = Counter(split.values())
    assert counts == {"train": 70, "val": 10, "test": 20}
    assert split == split_tables(dict(reversed(list(names.items()))), 3, 0.1, 0.2)  # input order is irrelevant
    assert split != split_tables(names, 4, 0.1, 0.2)


def test_label_counts_and_provenance_contents(cta: ColumnDataset) -> None:
    counts = cta.label_counts("train")
    assert sum(counts.values()) == len(cta.train) and set(counts) <= set(cta.labels)
    tables = cta.provenance["tables"]
    assert tables["source"] == "synthetic" and tables["kind"] == "cta" and tables["data_seed"] == 7
    assert tables["n_labels"] == len(cta.labels) and tables["config"]["n_tables"] == SMALL["n_tables"]
    assert tables["n_examples"] == {"train": len(cta.train), "val": len(cta.val), "test": len(cta.test)}


@pytest.mark.parametrize("data, message", [
    ({"bogus": 1}, "task.data.bogus: unknown key (allowed: source, root, "),
    ({"n_tables": "many"}, "task.data.n_tables: must be an integer, got 'many'"),
    ({"mmr_lambda": 1.5}, "task.data.mmr_lambda: must be in [0, 1], got 1.5"),
    ({"source": "csv"}, "task.data.source: must be one of synthetic, sotab, got 'csv'"),
    ({"source": "sotab"}, "task.data.root: required when source=sotab"),
    ({"total_bytes": 10}, "task.data.total_bytes: must be >= 19"),
    ({"hash_dim": 1000}, "task.data.hash_dim: must be a power of two, got 1000"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "task.data.val_fraction: val_fraction + test_fraction must be < 1"),
    ({"include_headers": "yes"}, "task.data.include_headers: must be true or false, got 'yes'"),
    ({"ngram_sizes": [3, "4"]}, "task.data.ngram_sizes: must be a list of integers"),
])
def test_config_errors_are_one_line_input_errors(data: dict, message: str) -> None:
    with pytest.raises(InputError) as caught:
        build_column_dataset({"data": {**tables_data(), **data}}, 0, "cta")
    assert str(caught.value).startswith(message), str(caught.value)
    with pytest.raises(InputError, match="task kind must be one of cta, cpa"):
        build_column_dataset({}, 0, "cxa")


def test_the_config_accepts_omegaconf_nodes_and_defaults_are_valid() -> None:
    from omegaconf import OmegaConf

    node = OmegaConf.create(tables_data(n_tables=20, ngram_sizes=[3, 4]))
    config = TablesDataConfig.from_mapping(node)
    assert config.n_tables == 20 and config.ngram_sizes == [3, 4]
    assert TablesDataConfig.from_mapping(tables_data()).problems() == []
    cta_yaml = OmegaConf.merge(OmegaConf.structured(TablesDataConfig), tables_data())  # the schema merge of validate
    assert TablesDataConfig.from_mapping(cta_yaml) == TablesDataConfig.from_mapping(tables_data())

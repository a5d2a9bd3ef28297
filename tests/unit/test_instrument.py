"""The fixed cross-arm instrument (issue 17): one eval set for every arm, per-kind bpb and relational probes whose
reference answers come from the catalog, scored at chance by a model that knows nothing."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from aegir.config import load_group
from aegir.eval.instrument import choice_outcomes, per_kind_window_bpb
from aegir.loops.lm import candidate_scores, score_instrument
from aegir.models.build import build_model
from aegir.tasks.ontology.catalog import SQL_TYPES, default_catalog
from aegir.tasks.pretrain.corpus import (SEGMENT_KINDS, document_text, generate_document,
                                         generate_heldout_document, heldout_class_names, seen_class_names)
from aegir.tasks.pretrain.instrument import (EVAL_FIRST_DOCUMENT, N_CANDIDATES, build_eval_windows,
                                             build_instrument, build_probes, probes_sha256)
from aegir.tasks.pretrain.task import prepare_pretrain_data

LN2 = math.log(2.0)


def test_every_arm_gets_the_same_instrument_and_its_own_validation_windows() -> None:
    task = load_group("task", "pretrain", data={"n_documents": 60}, seq_len=64, val_windows=4, eval_windows=4,
                      probe_items=2, heldout_classes=3)
    provenance = {arm: prepare_pretrain_data(task, arm, data_seed=3).provenance
                  for arm in ("full", "no_ontology", "no_schema")}
    for part in ("eval_windows", "eval_windows_heldout", "probes"):
        assert len({json.dumps(p[part], sort_keys=True) for p in provenance.values()}) == 1, part
    assert len({p["val_windows"]["sha256"] for p in provenance.values()}) == 3  # the per-arm windows stay
    longer = prepare_pretrain_data(dataclasses.replace(task, data=dataclasses.replace(task.data, n_documents=90)),
                                   "no_schema", data_seed=3).provenance
    for part in ("eval_windows", "eval_windows_heldout"):  # nor does the corpus size move them
        assert longer[part]["sha256"] == provenance["full"][part]["sha256"], part
    other_seed = prepare_pretrain_data(task, "full", data_seed=4).provenance
    for part in ("eval_windows", "eval_windows_heldout"):
        assert other_seed[part]["sha256"] != provenance["full"][part]["sha256"], part
    without = prepare_pretrain_data(dataclasses.replace(task, heldout_classes=0), "full", data_seed=3).provenance
    assert "eval_windows_heldout" not in without and "heldout_classes" not in without["probes"]
    assert without["probes"]["sha256"] != provenance["full"]["probes"]["sha256"]  # the probes avoid held-out classes
    assert provenance["full"]["probes"]["heldout_classes"] == list(heldout_class_names(default_catalog(), 3, 3))


def test_heldout_windows_are_cut_from_heldout_class_documents_only() -> None:
    catalog = default_catalog()
    windows = build_eval_windows(0, catalog, seq_len=127, n_windows=16, heldout_classes=4, about_heldout=True)
    texts = [generate_heldout_document(0, i, catalog, 4) for i in range(24)]
    stream = "\x1e".join(document_text(d) for d in texts).encode()
    for window in windows.windows.tolist():
        assert bytes(window) in stream
    seen = build_eval_windows(0, catalog, seq_len=127, n_windows=16, heldout_classes=4)
    assert seen.sha256 != windows.sha256
    assert windows.sha256 == build_eval_windows(0, catalog, seq_len=127, n_windows=16, heldout_classes=4,
                                                about_heldout=True).sha256


def test_eval_window_bytes_carry_the_kind_of_the_segment_they_come_from() -> None:
    catalog = default_catalog()
    windows = build_eval_windows(0, catalog, seq_len=127, n_windows=32)
    texts = {kind: [s.text.encode() for i in range(40) for s in generate_document(0, EVAL_FIRST_DOCUMENT + i, catalog)
                    if s.kind == kind] for kind in SEGMENT_KINDS}
    seen = set()
    for window, kinds in zip(windows.windows.tolist(), windows.kinds.tolist()):
        data = bytes(window)
        start = 0
        for end in range(1, len(kinds) + 1):  # maximal runs of one kind code
            if end == len(kinds) or kinds[end] != kinds[start]:
                if kinds[start] >= 0:
                    kind = SEGMENT_KINDS[kinds[start]]
                    seen.add(kind)
                    assert any(data[start:end] in text for text in texts[kind]), (kind, data[start:end][:60])
                else:  # separators: the blank line between segments or the record separator between documents
                    assert data[start:end] in (b"\n\n", b"\x1e"), data[start:end]
                start = end
    assert seen == set(SEGMENT_KINDS)
    assert windows.sha256 == build_eval_windows(0, catalog, seq_len=127, n_windows=32).sha256


def test_per_kind_window_bpb_is_the_mean_over_that_kinds_bytes_in_bits() -> None:
    losses = np.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]) * LN2
    kinds = np.array([[0, 1, 0], [1, -1, -1]])
    np.testing.assert_allclose(per_kind_window_bpb(losses, kinds, [0]), [2.0])  # window 2 has no kind-0 byte
    np.testing.assert_allclose(per_kind_window_bpb(losses, kinds, [1]), [2.0, 4.0])
    np.testing.assert_allclose(per_kind_window_bpb(losses, kinds, [0, 1]), [2.0, 4.0])


def test_choice_outcomes_accuracy_with_ties_and_log_odds() -> None:
    scores = np.array([[1.0, 2.0, 0.0, 0.0], [3.0, 3.0, 1.0, 1.0], [5.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    accuracy, log_odds = choice_outcomes(scores, np.array([1, 0, 1, 2]))
    np.testing.assert_allclose(accuracy, [1.0, 0.5, 0.0, 0.25])  # a four-way tie is chance, exactly
    np.testing.assert_allclose(log_odds, [2 - 1 / 3, 3 - 5 / 3, 1 - 7 / 3, 0.0])


@pytest.fixture(scope="module")
def probes() -> dict:
    return build_probes(7, default_catalog(), n_items=40)  # pure Python: cheap


@pytest.fixture(scope="module", params=[0, 4], ids=["all_classes", "heldout4"])
def probes_any_heldout(request: pytest.FixtureRequest) -> tuple[int, dict]:
    """(heldout_classes, probes): with classes held out, the probes ask about the seen classes only."""
    return request.param, build_probes(7, default_catalog(), n_items=40, heldout_classes=request.param)


def test_without_heldout_classes_the_probes_are_unchanged() -> None:
    """Oracles computed with build_probes before it took heldout_classes (commit 937d642)."""
    catalog = default_catalog()
    assert probes_sha256(build_probes(0, catalog, 30)) == (
        "991890b52f38b8b7202bf87422f271740a6152e23ad0a424d8074431cb1752e9")
    assert probes_sha256(build_probes(0, catalog, 40, heldout_classes=0)) == (
        "2763c6a4b70b237525e4a772f6e071635cb038ca4a56f2c3054cfc18a4e26b19")
    assert probes_sha256(build_probes(0, catalog, 30, heldout_classes=4)) != (
        "991890b52f38b8b7202bf87422f271740a6152e23ad0a424d8074431cb1752e9")


@pytest.fixture(scope="module")
def few_probes() -> dict:
    return build_probes(7, default_catalog(), n_items=15)  # scored by a model: 60 items keep the test short


def test_probe_reference_answers_come_from_the_catalog(probes_any_heldout: tuple[int, dict]) -> None:
    catalog = default_catalog()
    n_heldout, probes = probes_any_heldout
    seen = set(seen_class_names(catalog, 7, n_heldout))
    assert len(seen) == len(catalog.table_classes) - n_heldout
    for name, items in probes.items():
        assert len(items) == 40
        for item in items:
            assert len(item.candidates) == N_CANDIDATES and len(set(item.candidates)) == N_CANDIDATES, name
            right = item.candidates[item.answer]
            table = next(catalog.table_for(c) for c in catalog.table_classes
                         if catalog.table_for(c).name == item.meta["table"])
            assert table.class_name in seen, (name, table.class_name)
            if name == "column_type":  # the context's CREATE TABLE + the answer is the table's real DDL
                column = table.column(item.meta["column"])
                assert right.rstrip(",\n") == SQL_TYPES[column.datatype]
                ddls = [catalog.render_create_table(table, False, inline) for inline in (False, True)]
                head = item.context[item.context.index("CREATE TABLE"):]
                assert any(d.startswith(head + right) for d in ddls)
                assert not any(d.startswith(head + wrong) for d in ddls for wrong in item.candidates if wrong != right)
                continue
            column = table.column(item.meta["column"])
            assert column.references == item.meta["references"] and column.references in seen
            target = catalog.table_name(column.references)
            if name != "join_row":  # every candidate is a seen table
                seen_tables = {catalog.table_name(c) for c in seen}
                assert {c[:c.index("(id)" if name == "ddl_references" else " AS r")] for c in item.candidates
                        } <= seen_tables, (name, item.candidates)
            if name == "ddl_references":
                ddls = [catalog.render_create_table(table, flag, inline) for flag in (False, True)
                        for inline in (False, True)]
                assert right == f"{target}(id)"
                assert any(d.startswith(item.context + right) for d in ddls)
                assert not any(item.context + wrong in d for d in ddls for wrong in item.candidates if wrong != right)
            elif name == "join_target":  # the context + the answer is the catalog's join view, verbatim
                view = next(v for v in catalog.views_for(table.class_name) if v.sql.startswith(item.context))
                assert item.context + right == view.sql
            else:  # join_row: the answer is the name of a row of the referenced class, the others of unrelated ones
                classes = item.meta["candidate_classes"].split(",")
                assert classes[item.answer] == column.references and set(classes) <= seen
                for other in classes[:item.answer] + classes[item.answer + 1:]:
                    assert other != column.references
                    assert other not in catalog.ancestors(column.references)
                    assert column.references not in catalog.ancestors(other)


def test_probe_answers_are_spread_over_positions(probes: dict) -> None:
    """A scorer that always picks one position must score chance, not more."""
    for name, items in probes.items():
        counts = np.bincount([item.answer for item in items], minlength=N_CANDIDATES)
        assert counts.max() <= 20, (name, counts)


def test_a_random_init_model_scores_at_chance_and_an_oracle_perfectly(few_probes: dict) -> None:
    torch.manual_seed(0)
    model = build_model(load_group("model", "rwkv7_nano", d_model=32, n_layers=1))
    items = [item for group in few_probes.values() for item in group]
    answers = np.array([item.answer for item in items])
    accuracy, log_odds = choice_outcomes(candidate_scores(model, items, max_len=96, batch_size=128), answers)
    half = 1.96 * math.sqrt(0.25 * 0.75 / len(items))  # the 95% half-width of a chance scorer's accuracy
    assert abs(accuracy.mean() - 1 / N_CANDIDATES) < half, accuracy.mean()
    assert abs(log_odds.mean()) < 0.05, log_odds.mean()
    oracle = np.eye(N_CANDIDATES)[answers]  # knows the generator's answer
    assert choice_outcomes(oracle, answers)[0].mean() == 1.0


def test_score_instrument_reports_every_kind_and_probe_with_companions() -> None:
    instrument = build_instrument(0, default_catalog(), seq_len=64, n_windows=24, n_items=2, heldout_classes=4)
    torch.manual_seed(0)
    model = build_model(load_group("model", "rwkv7_nano", d_model=32, n_layers=1))
    metrics = score_instrument(model, instrument, seq_len=64, batch_size=32)
    for name in [*(f"{prefix}/{k}" for prefix in ("eval/bpb", "eval/bpb_heldout") for k in (*SEGMENT_KINDS, "common")),
                 *(f"eval/relational/{p}" for p in instrument.probes), "eval/relational/mean",
                 "eval/relational/log_odds"]:
        assert math.isfinite(metrics[name]) and metrics[f"{name}/lower"] <= metrics[name] <= metrics[f"{name}/upper"]
        assert metrics[f"{name}/n"] >= 1
    assert 7.0 < metrics["eval/bpb/common"] < 10.0  # an untrained byte model: about log2(vocab) bits
    assert 7.0 < metrics["eval/bpb_heldout/common"] < 10.0


class _ContextBlind(torch.nn.Module):
    """A unigram byte model: the same next-byte distribution whatever came before."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.linspace(-3.0, 3.0, 256))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.logits.expand(*ids.shape, 256), None


def test_calibrated_join_row_cancels_what_a_name_scores_on_its_own(probes: dict) -> None:
    """A model that ignores the context prefers some names for their bytes alone; calibrated against the cue-free
    baseline, every join_row candidate scores exactly 0, so the probe gives it chance and log-odds 0."""
    items = probes["join_row"]
    assert all(item.baseline for item in items)
    answers = np.array([item.answer for item in items])
    scores = candidate_scores(_ContextBlind(), items, max_len=128, batch_size=64)
    np.testing.assert_allclose(scores, 0.0, atol=1e-6)
    accuracy, log_odds = choice_outcomes(scores, answers)
    assert accuracy.mean() == pytest.approx(0.25) and log_odds.mean() == pytest.approx(0.0, abs=1e-6)
    uncalibrated = candidate_scores(_ContextBlind(), [dataclasses.replace(i, baseline="") for i in items], 128, 64)
    assert np.ptp(uncalibrated, axis=1).min() > 0  # without the baseline the names' own bytes decide

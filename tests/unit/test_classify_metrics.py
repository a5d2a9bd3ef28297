"""Metric assembly of the column classifier (aegir/eval/classification.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from aegir.eval.classification import (bootstrap_f1, class_weights, classification_metrics, confusion_image,
                                       confusion_matrix, evaluation_metrics, per_class_f1, per_class_table)

# 4 classes, class 3 never occurs; targets / predictions chosen so every per-class F1 is easy to count by hand:
#   class 0: tp 2, fp 1, fn 0 -> F1 = 4/5;  class 1: tp 1, fp 1, fn 1 -> 1/2;  class 2: tp 0, fp 0, fn 1 -> 0
TARGETS = [0, 0, 1, 1, 2]
PREDS = [0, 0, 1, 0, 1]


def test_macro_micro_and_distinct_by_hand() -> None:
    m = classification_metrics(PREDS, TARGETS, num_classes=4)
    # class 3 is neither predicted nor a target: left out of the macro mean (torchmetrics' convention)
    assert m["val/macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 0) / 3)
    assert m["val/micro_f1"] == pytest.approx(3 / 5)  # = accuracy for single-label data
    assert m["val/distinct_preds"] == 2.0
    assert set(classification_metrics(PREDS, TARGETS, 4, prefix="test/")) == {
        "test/macro_f1", "test/micro_f1", "test/distinct_preds"}
    empty = classification_metrics([], [], 4)
    assert math.isnan(empty["val/macro_f1"]) and empty["val/distinct_preds"] == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([0], [0, 1], 4)


def test_collapsed_predictions_score_low_macro_f1() -> None:
    targets = list(range(10)) * 5
    m = classification_metrics([3] * 50, targets, num_classes=10)
    assert m["val/distinct_preds"] == 1.0
    assert m["val/micro_f1"] == pytest.approx(0.1)
    assert m["val/macro_f1"] == pytest.approx((2 * 5 / (50 + 5)) / 10)  # only class 3 scores: F1 = 10/55


def test_per_class_f1_lists_labels_seen_in_targets_or_predictions() -> None:
    scores = per_class_f1(PREDS, TARGETS, ["a", "b", "c", "d"])
    assert scores == pytest.approx({"a": 4 / 5, "b": 1 / 2, "c": 0.0})
    table = per_class_table(scores, {"a": 2, "b": 2, "c": 1}, {"a": 3, "b": 2})
    assert table.splitlines()[2].startswith("| c | 0.000 | 1 | 0 |")  # worst first


def test_bootstrap_point_estimate_matches_torchmetrics_and_ci_covers_it() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 12, size=400)
    preds = np.where(rng.random(400) < 0.6, targets, rng.integers(0, 12, size=400))
    ci = bootstrap_f1(preds, targets, 12, n_boot=300, seed=1)
    macro = float(multiclass_f1_score(torch.as_tensor(preds), torch.as_tensor(targets), num_classes=12,
                                      average="macro"))
    assert ci["macro_f1"]["mean"] == pytest.approx(macro, abs=1e-6)  # torchmetrics computes in float32
    assert ci["micro_f1"]["mean"] == pytest.approx(float((preds == targets).mean()))
    for name in ("macro_f1", "micro_f1"):
        stat = ci[name]
        assert stat["n"] == 400 and stat["low"] < stat["mean"] < stat["high"]
        assert 0.01 < stat["ci95"] < 0.15 and stat["std"] > 0
    assert bootstrap_f1(preds, targets, 12, n_boot=300, seed=1) == ci  # seeded
    perfect = bootstrap_f1(targets, targets, 12, n_boot=50)
    assert perfect["macro_f1"]["mean"] == 1.0 and perfect["macro_f1"]["ci95"] == 0.0


def test_class_weights() -> None:
    assert class_weights([3, 1, 0], "none") is None
    balanced = class_weights([3, 1, 0], "balanced")
    assert balanced.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1), 0.0])
    sqrt = class_weights([4, 1, 0], "sqrt")
    assert sqrt.tolist() == pytest.approx([0.5 / 0.75, 1.0 / 0.75, 0.0])
    with pytest.raises(ValueError, match="class_weighting"):
        class_weights([1], "inverse")


def test_confusion_matrix_and_its_picture() -> None:
    cm = confusion_matrix(PREDS, TARGETS, 4)
    assert cm.tolist() == [[2, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    image = confusion_image(cm, cell=2)
    assert image.shape == (3, 8, 8) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    dark, white = image[:, 0, 0], image[:, 0, 2]  # row 0 all in column 0: full colour, then white
    assert dark.tolist() == pytest.approx([0.03, 0.19, 0.42]) and white.tolist() == [1.0, 1.0, 1.0]
    assert image[:, 6, 6].tolist() == pytest.approx([0.9, 0.9, 0.9])  # class 3 has no support: grey row


def test_evaluation_metrics_assemble_the_liveness_gate_inputs() -> None:
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(12), 20)
    centres = rng.normal(size=(12, 16)) * 5
    feats = centres[targets] + rng.normal(size=(240, 16)) * 0.1
    m = evaluation_metrics(targets, targets, feats, 12, loss=0.25,
                           liveness={"knn_k": 10, "inflation": 2.0, "expansion": 3, "max_points": 1024})
    assert m["val/macro_f1"] == pytest.approx(1.0) and m["val/loss"] == 0.25
    assert m["val/distinct_preds"] == m["live/distinct_preds"] == 12.0
    assert m["live/mcl_clusters"] == 12.0 and m["live/top1_share"] == pytest.approx(1 / 12)
    for key in ("live/spread_ratio", "live/rankme", "live/mean_cosine", "live/dim_var_max"):
        assert math.isfinite(m[key])
    collapsed = evaluation_metrics(np.zeros(240, dtype=int), targets, np.ones((240, 16)), 12,
                                   liveness={"knn_k": 10})
    assert collapsed["live/mcl_clusters"] == 1.0 and collapsed["live/distinct_preds"] == 1.0
    assert collapsed["live/spread_ratio"] == 0.0
    assert "live/mcl_clusters" not in evaluation_metrics(targets, targets, feats, 12)  # liveness off

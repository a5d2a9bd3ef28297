"""Collapse diagnostics against hand-computed oracles; every liveness gate outcome through aegir.eval.gates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aegir.config.validate import _validate_gates
from aegir.eval.collapse import (
    DISTINCT_PREDS,
    MACRO_F1,
    MCL_CLUSTERS,
    default_liveness_gates,
    dimension_variance,
    distinct_predictions,
    liveness_metrics,
    macro_f1,
    mean_pairwise_cosine,
    prediction_histogram,
    rankme,
    spread_ratio,
    top1_share,
)
from aegir.eval.gates import evaluate_gates, gate_metrics

GATE_NAMES = ("live_mcl_clusters", "live_macro_f1", "live_distinct_preds")


def healthy(num: int = 12, per: int = 40, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num, dim))
    centres *= 10.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(num), per)
    return centres[truth] + 0.5 * rng.normal(size=(num * per, dim)), truth


def collapsed(n: int = 480, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Aegir's SOTAB failure: one vector of norm ~7 plus noise ~1e-3 of it."""
    rng = np.random.default_rng(seed)
    return 7.0 * rng.normal(size=dim) / math.sqrt(dim) + 1e-3 * rng.normal(size=(n, dim)) / math.sqrt(dim)


# --- RankMe ---------------------------------------------------------------------------------------------------------

def test_rankme_identity_is_full_rank() -> None:
    for d in (1, 8, 64):
        assert rankme(torch.eye(d)) == pytest.approx(d, rel=1e-4)


def test_rankme_rank_one_is_one() -> None:
    rng = np.random.default_rng(0)
    z = np.outer(rng.normal(size=200), rng.normal(size=64))
    assert rankme(z) == pytest.approx(1.0, abs=1e-3)


def test_rankme_two_singular_values_hand_computed() -> None:
    # sigma = (3, 1) -> p = (3/4, 1/4) -> exp(H) = exp(-(0.75 ln 0.75 + 0.25 ln 0.25)) = 1.7548...
    z = np.array([[3.0, 0.0], [0.0, 1.0]])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert rankme(z, eps=0.0) == pytest.approx(expected, rel=1e-12)
    assert rankme(5.0 * z, eps=0.0) == pytest.approx(expected, rel=1e-12)  # scale-free


def test_rankme_centred_sees_noise_uncentred_sees_collapse() -> None:
    x = collapsed()
    assert rankme(x) < 1.05
    assert rankme(x, centered=True) > 20.0  # caveat: isotropic noise reads as high rank
    assert rankme(np.zeros((5, 3))) == 0.0


# --- spread, cosine, variance ---------------------------------------------------------------------------------------

def test_spread_ratio_hand_computed() -> None:
    # unit norms, farthest pair (1,0)-(-1,0) at distance 2
    assert spread_ratio(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    # norms 3 and 5 (mean 4), distance |(3,0)-(0,5)| = sqrt(34)
    assert spread_ratio(torch.tensor([[3.0, 0.0], [0.0, 5.0]])) == pytest.approx(math.sqrt(34) / 4)


def test_spread_ratio_collapse_and_degenerate_input() -> None:
    assert spread_ratio(collapsed()) < 1e-2
    assert spread_ratio(healthy()[0]) > 0.5
    assert spread_ratio(np.zeros((4, 3))) == 0.0
    assert math.isnan(spread_ratio(np.ones((1, 3))))


def test_spread_ratio_subsample_is_seeded() -> None:
    x = healthy()[0]
    assert spread_ratio(x, max_points=50, seed=3) == spread_ratio(x, max_points=50, seed=3)
    assert spread_ratio(x, max_points=50, seed=3) <= spread_ratio(x) + 1e-12


def test_mean_pairwise_cosine_hand_computed() -> None:
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(0.0)
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])) == pytest.approx(1 / 3)
    assert mean_pairwise_cosine(collapsed()) == pytest.approx(1.0, abs=1e-5)
    assert mean_pairwise_cosine(np.zeros((4, 3))) == 1.0
    # rows a, 2a, 0: pair cosines 1, 0, 0 -> 1/3
    assert mean_pairwise_cosine(np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]])) == pytest.approx(1 / 3)


def test_dimension_variance_hand_computed() -> None:
    var_max, var_median = dimension_variance(np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [4.0, 1.0, 8.0]]))
    assert var_max == pytest.approx(8 / 3) and var_median == pytest.approx(2.0)


# --- predictions ----------------------------------------------------------------------------------------------------

def test_prediction_statistics() -> None:
    preds = torch.tensor([2, 2, 2, 0])
    assert top1_share(preds) == 0.75
    assert distinct_predictions(preds) == 2
    assert prediction_histogram(preds, 4).tolist() == [1, 0, 3, 0]
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])  # scores are reduced by argmax
    assert top1_share(logits) == pytest.approx(2 / 3) and distinct_predictions(logits) == 2
    assert math.isnan(top1_share([])) and distinct_predictions(np.zeros(0, dtype=int)) == 0
    with pytest.raises(ValueError, match="must lie in"):
        prediction_histogram([0, 5], 4)


def test_macro_f1_hand_computed() -> None:
    # class 0: P=2/4, R=1 -> F1 2/3; class 1: F1 0; the 8 classes absent from both are left out -> 1/3
    assert macro_f1([0, 0, 0, 0], [0, 0, 1, 1], num_classes=10) == pytest.approx(1 / 3, rel=1e-6)
    assert macro_f1([0, 1, 2], [0, 1, 2], num_classes=82) == pytest.approx(1.0, rel=1e-6)


# --- liveness_metrics -----------------------------------------------------------------------------------------------

def test_liveness_metrics_names_and_healthy_values() -> None:
    x, truth = healthy()
    metrics = liveness_metrics(torch.tensor(x, dtype=torch.float32), truth, truth, num_classes=12)
    assert set(metrics) == {
        "live/mcl_clusters", "live/distinct_preds", "live/top1_share", "live/spread_ratio", "live/rankme",
        "live/rankme_centered", "live/mean_cosine", "live/dim_var_max", "live/dim_var_median", "val/macro_f1"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["live/mcl_clusters"] == 12.0
    assert metrics["live/distinct_preds"] == 12.0
    assert metrics["live/top1_share"] == pytest.approx(1 / 12)
    assert metrics["val/macro_f1"] == pytest.approx(1.0, rel=1e-6)
    assert metrics["live/rankme"] > 10.0


def test_liveness_metrics_collapsed_values() -> None:
    x = collapsed()
    truth = np.arange(480) % 12
    metrics = liveness_metrics(x, np.zeros(480, dtype=int), truth, num_classes=12, with_macro_f1=False)
    assert "val/macro_f1" not in metrics
    assert metrics["live/mcl_clusters"] == 1.0
    assert metrics["live/distinct_preds"] == 1.0 and metrics["live/top1_share"] == 1.0
    assert metrics["live/spread_ratio"] < 1e-2 and metrics["live/rankme"] < 1.05


def test_liveness_metrics_subsample_keeps_prediction_metrics_whole() -> None:
    x, truth = healthy()
    metrics = liveness_metrics(x, truth, truth, num_classes=12, max_points=100, seed=1)
    assert metrics["live/distinct_preds"] == 12.0 and metrics["live/top1_share"] == pytest.approx(1 / 12)
    assert metrics["live/mcl_clusters"] >= 3.0


def test_liveness_metrics_nonfinite_embeddings_are_nan_not_a_crash() -> None:
    x, truth = healthy(num=3, per=5)
    x[0, 0] = np.nan
    metrics = liveness_metrics(x, truth, truth, num_classes=3)
    assert math.isnan(metrics["live/mcl_clusters"]) and math.isnan(metrics["live/rankme"])
    assert metrics["live/distinct_preds"] == 3.0


def test_liveness_metrics_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="predictions"):
        liveness_metrics(np.ones((4, 2)), [0, 1], [0, 1], num_classes=2)


# --- gates ----------------------------------------------------------------------------------------------------------

def test_default_gates_are_valid_gate_config() -> None:
    gates = default_liveness_gates(required=True)
    assert set(gates) == {*GATE_NAMES, "required"}
    assert gates["live_mcl_clusters"] == {"metric": MCL_CLUSTERS, "op": ">=", "value": 3.0}
    assert gates["live_macro_f1"] == {"metric": MACRO_F1, "op": ">=", "value": 0.1}
    assert gates["live_distinct_preds"] == {"metric": DISTINCT_PREDS, "op": ">=", "value": 10.0}
    assert _validate_gates(gates) == gates  # the schema the config loader applies accepts them unchanged
    assert "required" not in default_liveness_gates()
    assert default_liveness_gates(num_classes=4)["live_distinct_preds"]["value"] == 4.0


@pytest.mark.parametrize(
    ("gate", "metric", "passing", "failing"),
    [("live_mcl_clusters", "live/mcl_clusters", 3.0, 2.0),
     ("live_macro_f1", "val/macro_f1", 0.10, 0.0999),
     ("live_distinct_preds", "live/distinct_preds", 10.0, 9.0)],
)
def test_each_gate_passes_at_its_threshold_and_fails_below(gate: str, metric: str, passing: float,
                                                            failing: float) -> None:
    gates = default_liveness_gates()
    ok = {"live/mcl_clusters": 5.0, "val/macro_f1": 0.5, "live/distinct_preds": 20.0}
    for value, expected in ((passing, 1.0), (failing, 0.0), (math.nan, 0.0)):
        verdicts = evaluate_gates(gates, {**ok, metric: value})
        values = gate_metrics(verdicts)
        assert values[f"gate/{gate}"] == expected
        assert all(values[f"gate/{other}"] == 1.0 for other in GATE_NAMES if other != gate)
    missing = {k: v for k, v in ok.items() if k != metric}
    assert gate_metrics(evaluate_gates(gates, missing))[f"gate/{gate}"] == 0.0


def test_healthy_run_passes_every_liveness_gate() -> None:
    x, truth = healthy()
    verdicts = evaluate_gates(default_liveness_gates(), liveness_metrics(x, truth, truth, num_classes=12))
    assert gate_metrics(verdicts) == {f"gate/{name}": 1.0 for name in GATE_NAMES}


def test_collapsed_run_fails_every_liveness_gate() -> None:
    x = collapsed()
    truth = np.arange(480) % 12
    metrics = liveness_metrics(x, np.full(480, 7), truth, num_classes=12)
    verdicts = evaluate_gates(default_liveness_gates(), metrics)
    assert gate_metrics(verdicts) == {f"gate/{name}": 0.0 for name in GATE_NAMES}
    assert verdicts["live_mcl_clusters"].observed == 1.0
    # class 7: precision 1/12, recall 1 -> F1 2/13; the other 11 classes score 0 -> macro 1/78
    assert verdicts["live_macro_f1"].observed == pytest.approx(1 / 78, rel=1e-5)


def test_diverged_run_fails_the_cluster_gate() -> None:
    x, truth = healthy(num=3, per=5)
    x[:] = np.inf
    verdict = evaluate_gates(default_liveness_gates(), liveness_metrics(x, truth, truth, 3))["live_mcl_clusters"]
    assert not verdict.passed and verdict.observed is None

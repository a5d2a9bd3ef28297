"""Confidence intervals against SciPy, gates against hand-computed verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aegir.eval.gates import evaluate_gates, gate_metrics
from aegir.eval.stats import mean_ci


def test_mean_ci_matches_scipy_t_interval() -> None:
    values = [2.1, 2.4, 1.9, 2.6, 2.2]
    ci = mean_ci(values)
    low, high = stats.t.interval(0.95, df=4, loc=np.mean(values), scale=stats.sem(values))
    assert ci.n == 5
    assert ci.mean == pytest.approx(2.24)
    assert ci.std == pytest.approx(np.std(values, ddof=1))
    assert ci.ci95 == pytest.approx((high - low) / 2)


def test_mean_ci_three_seeds_hand_computed() -> None:
    # mean 2, std 1, t_{0.975,2} = 4.302652729911275 -> half-width 4.3027 / sqrt(3)
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.ci95 == pytest.approx(4.302652729911275 / math.sqrt(3))


def test_mean_ci_degenerate_sizes() -> None:
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    one = mean_ci([3.0])
    assert one.mean == 3.0 and math.isinf(one.ci95)


def test_gates_verdicts() -> None:
    gates = {"required": True,
             "bpb_below_3": {"metric": "val/bpb", "op": "<", "value": 3.0},
             "loss_at_least_1": {"metric": "val/loss", "op": ">=", "value": 1.0},
             "missing": {"metric": "val/macro_f1", "op": ">", "value": 0.1}}
    verdicts = evaluate_gates(gates, {"val/bpb": 2.5, "val/loss": 0.9})
    assert set(verdicts) == {"bpb_below_3", "loss_at_least_1", "missing"}
    assert verdicts["bpb_below_3"].passed and verdicts["bpb_below_3"].observed == 2.5
    assert not verdicts["loss_at_least_1"].passed
    assert not verdicts["missing"].passed and verdicts["missing"].observed is None
    assert gate_metrics(verdicts) == {"gate/bpb_below_3": 1.0, "gate/loss_at_least_1": 0.0, "gate/missing": 0.0}


def test_gate_on_nan_metric_fails() -> None:
    verdict = evaluate_gates({"g": {"metric": "m", "op": "<", "value": 1.0}}, {"m": float("nan")})["g"]
    assert not verdict.passed

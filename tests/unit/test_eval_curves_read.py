"""Eval curves that read at TensorBoard's default settings (issue 16, point 9): the commands a new user runs first
evaluate often enough for a curve (at least 6 points), and a band's bounds are the mean ∓ the half-width."""

from __future__ import annotations

import math

import pytest
import yaml

from aegir.observe.tensorboard import band, band_bounds
from aegir.run.compose import compose_config
from tests.conftest import ROOT


def _eval_points(overrides: list[str]) -> int:
    """Evaluations of a run: one every val_check_interval optimizer steps, plus GRPO's step-0 evaluation."""
    cfg = compose_config(overrides)
    points = cfg.trainer.max_steps // cfg.trainer.val_check_interval
    return points + (1 if cfg.algo.name == "grpo" else 0)


@pytest.mark.parametrize("overrides", [
    [],  # python run.py
    ["+experiment=grpo_toy"],
    ["+experiment=cta_from_scratch"],
    yaml.safe_load((ROOT / "sweeps" / "toy_grid.yaml").read_text())["base"],  # every trial of the toy sweep
], ids=["default", "grpo_toy", "cta_from_scratch", "toy_grid"])
def test_first_commands_evaluate_often_enough_for_a_curve(overrides: list[str]) -> None:
    assert _eval_points(overrides) >= 6


def test_band_bounds_are_the_mean_minus_and_plus_the_half_width() -> None:
    assert band("val/bpb") == ["val/bpb", "val/bpb/lower", "val/bpb/upper"]
    assert band_bounds("eval/reward", 0.5, 0.125) == {"eval/reward/lower": 0.375, "eval/reward/upper": 0.625}
    assert band_bounds("eval/reward", 0.5, math.inf) == {}  # one sample: no band rather than an infinite one

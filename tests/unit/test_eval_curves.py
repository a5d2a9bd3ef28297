"""Eval curves that read at TensorBoard's default settings (issue 16): the toy experiments evaluate often enough to
draw a curve (smoothing and "ignore outliers" flatten and clip three points), and the sweep's trials too."""

from __future__ import annotations

from aegir.run.compose import compose_config
from aegir.sweep import load_spec
from tests.conftest import ROOT


def _evals(overrides: list[str]) -> int:
    cfg = compose_config(overrides)
    return cfg.trainer.max_steps // cfg.trainer.val_check_interval + 1  # + the step-0 evaluation


def test_toy_experiments_give_an_eval_curve() -> None:
    assert _evals(["+experiment=grpo_toy"]) >= 6
    spec = load_spec(ROOT / "sweeps" / "toy_grid.yaml")
    assert _evals(spec.base) >= 6

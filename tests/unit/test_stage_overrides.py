"""`stages.<name>.set`: one stage's setting changed from the command line or a sweep, winning over the stage's own
overrides; and every point of sweeps/v42_grid.yaml reaches the GRPO stage (and only it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from aegir.config import validate
from aegir.run.compose import compose_config
from aegir.run.stages import _override_value, stage_overrides
from aegir.sweep import load_spec

ROOT = Path(__file__).resolve().parents[2]


def _stage(overrides: list[str], name: str):
    cfg = validate(compose_config(overrides))
    raw = compose_config(stage_overrides(overrides, cfg.stages[name]))
    with open_dict(raw):
        raw.stages = {}
    return validate(raw)


@pytest.mark.slow
def test_set_wins_over_the_stage_overrides_and_touches_one_stage() -> None:
    overrides = ["+experiment=v42_byte", "++stages.grpo.set.algo.lr=0.001", "++stages.grpo.set.algo.group_size=8"]
    grpo, sft = _stage(overrides, "grpo"), _stage(overrides, "sft")
    assert grpo.algo.lr == 0.001 and grpo.algo.group_size == 8  # v42.yaml's stage says 3e-4 and 16
    assert grpo.algo.kl_coef == 0.0 and grpo.trainer.max_steps == 1500  # the rest of the stage is unchanged
    assert sft.algo.name == "sft" and sft.algo.lr != 0.001
    plain = _stage(["+experiment=v42_byte"], "grpo")
    assert plain.algo.lr == 3.0e-4 and plain.algo.group_size == 16


def test_a_misspelt_set_key_is_a_config_error() -> None:
    from hydra.errors import HydraException

    from aegir.errors import InputError

    with pytest.raises((InputError, HydraException), match="algo.group_sise"):
        _stage(["+experiment=v42_byte", "++stages.grpo.set.algo.group_sise=8"], "grpo")


@pytest.mark.parametrize("value, text", [(None, "null"), (True, "true"), (3, "3"), (1e-4, "0.0001"),
                                         ("gdpo", "gdpo"), ("a b'c", "'a b\\'c'"), ([1, "x"], "[1,x]")])
def test_values_are_written_in_hydra_grammar(value, text) -> None:
    assert _override_value(value) == text


@pytest.mark.slow
def test_every_point_of_the_v42_grid_configures_the_grpo_stage() -> None:
    spec = load_spec(ROOT / "sweeps" / "v42_grid.yaml")
    assert spec.sampler["name"] == "grid" and spec.metric == "eval/reward"
    keys = list(spec.params)
    points = list(itertools.product(*(spec.params[k]["choices"] for k in keys)))
    assert len(points) == spec.n_trials == 12
    for point in points:
        overrides = [*spec.base, *(f"++{k}={v}" for k, v in zip(keys, point))]
        grpo = _stage(overrides, "grpo")
        got = OmegaConf.to_container(grpo.algo)
        assert (got["group_size"], got["kl_coef"], got["lr"]) == point


def test_the_v42_grid_scores_the_grpo_stage() -> None:
    """v42 trains SFT first: the sweep's objective (eval/reward) belongs to its last stage, not to the run's
    top-level config (algo=sft, which cannot log eval/reward and would be refused)."""
    from aegir.sweep import preflight, trial_overrides

    spec = load_spec(ROOT / "sweeps" / "v42_grid.yaml")
    assert preflight(spec) == "grpo"
    overrides = trial_overrides(spec, {"stages.grpo.set.algo.lr": 1e-4}, "grpo")
    assert "++stages.grpo.set.objective.metric=eval/reward" in overrides
    grpo = _stage(overrides, "grpo")
    assert grpo.objective.metric == "eval/reward" and grpo.objective.mode == "max" and grpo.algo.lr == 1e-4

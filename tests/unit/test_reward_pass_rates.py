"""reward.pass_rates: grpo/pass/NAME and eval/pass/NAME are the share of applicable rows whose component is >= min."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aegir.config import group_defaults, load_group
from aegir.errors import InputError
from aegir.loops.grpo import GRPOModule
from aegir.models.lm import ByteLM
from aegir.models.policy import BytePolicy
from aegir.rl.rewards import RewardSpec, pass_rate
from aegir.tokenizer import VOCAB_SIZE


def test_pass_rate_counts_applicable_rows_only() -> None:
    values = torch.tensor([1.0, 0.0, math.nan, 0.95, 0.5], dtype=torch.float64)
    assert pass_rate(values, 0.9) == pytest.approx(2 / 4)
    assert pass_rate(values, 1.0) == pytest.approx(1 / 4)
    assert math.isnan(pass_rate(torch.tensor([math.nan]), 1.0))


def test_the_ontology_reward_config_declares_the_three_pass_rates() -> None:
    spec = RewardSpec.from_config(group_defaults("reward", "ontology"))
    assert spec.pass_rates == {"structural": ("onto_structural", 1.0), "consistent": ("onto_consistency", 1.0),
                               "coverage_close": ("onto_coverage", 0.9)}
    assert spec.gate == "onto_structural" and spec.catalog_reload is False


@pytest.mark.parametrize(("pass_rates", "fragment"), [
    ({"x": {"component": "toy_exact", "min": 1.0}}, "reward.pass_rates.x.component"),
    ({"x": {"component": "onto_coverage"}}, "reward.pass_rates.x: expected"),
    ({"x": {"component": "onto_coverage", "min": "high"}}, "reward.pass_rates.x.min"),
])
def test_bad_pass_rates_name_the_key(pass_rates: dict, fragment: str) -> None:  # type: ignore[type-arg]
    cfg = {**group_defaults("reward", "ontology"), "pass_rates": pass_rates}
    with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
        RewardSpec.from_config(cfg)


def test_eval_metrics_carry_the_pass_rates(tmp_path: Path) -> None:
    spec = RewardSpec.from_config(group_defaults("reward", "ontology"))
    policy = BytePolicy(ByteLM(vocab_size=VOCAB_SIZE, d_model=32, n_layers=1, head_size=32))
    records = [{"id": 0, "prompt": "x", "task": "ontology"}]
    module = GRPOModule(policy, records, records, spec, load_group("algo", "grpo"), seed=0, total_steps=1,
                        samples_dir=tmp_path)
    rows = [{"task": "ontology", "reward": r, "reward/onto_structural": a, "reward/onto_consistency": b,
             "reward/onto_coverage": d, "reward/onto_parsimony": 1.0}
            for r, a, b, d in [(1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 1.0, 0.5), (0.8, 1.0, 0.6, 0.95), (0.0, 0.0, 0.0, 0.0)]]
    metrics = module._eval_metrics(rows)
    assert metrics["eval/pass/structural"] == pytest.approx(0.5)
    assert metrics["eval/pass/consistent"] == pytest.approx(0.5)
    assert metrics["eval/pass/coverage_close"] == pytest.approx(0.5)
    assert metrics["eval/reward"] == pytest.approx(0.45)

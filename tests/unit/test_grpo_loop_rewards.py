"""Loop-level regressions of GRPOModule's reward handling and update: GDPO sees the soft overlong penalty and the
reward gate, the dynamic-sampling filter looks at what the advantage normalises, not-applicable rewards leave the
group baseline, an uneven last micro-batch weighs its sequences like the others, and a knob without effect under
the chosen mode is announced.

`training_step` runs for real on fabricated rollouts (the rollout is replaced, so completions, lengths and rewards
are chosen by hand); the optimizer step and the logging are captured instead of run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import pytest
import torch

import tests.unit.reward_fixtures  # noqa: F401  (registers test_gate_ok)
from aegir.config import load_group
from aegir.loops.grpo import GRPOModule
from aegir.models.lm import ByteLM
from aegir.models.policy import BytePolicy
from aegir.rl.rewards import RewardSpec, register_reward
from aegir.rl.rollout import RolloutBatch
from aegir.tokenizer import VOCAB_SIZE

ROOT = Path(__file__).resolve().parents[2]
F64 = torch.float64


@register_reward("test_loop_first")
def loop_first(record: Mapping[str, Any], completion: str) -> float | None:
    """The completion's first word read as a number; None (not applicable) when it is "na"."""
    word = completion.split()[0]
    return None if word == "na" else float(word)


@register_reward("test_loop_second")
def loop_second(record: Mapping[str, Any], completion: str) -> float | None:
    """The completion's second word read as a number."""
    return float(completion.split()[1])


def _module(tmp_path: Path, components: dict[str, float], gate: str | None = None,
            **algo: Any) -> GRPOModule:
    """A GRPOModule with a 1-layer policy, one prompt of group 4, conf/algo/grpo.yaml defaults plus `algo`."""
    settings = load_group("algo", "grpo", **{"group_size": 4, "prompts_per_step": 1, "grad_clip": 0.0, **algo})
    records = [{"id": i, "prompt": "1+1=", "answer": "2", "task": "toy"} for i in range(8)]
    torch.manual_seed(0)
    policy = ByteLM(vocab_size=VOCAB_SIZE, d_model=32, n_layers=1, head_size=32)
    return GRPOModule(BytePolicy(policy), records, records, RewardSpec(components=components, gate=gate), settings,
                      seed=0, total_steps=4, samples_dir=tmp_path)


def _batch(lengths: Sequence[int], width: int, seed: int = 0) -> RolloutBatch:
    generator = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(list(lengths))
    mask = (torch.arange(width) < lengths_t.unsqueeze(1)).float()
    ids = torch.randint(0, 256, (len(lengths), width), generator=generator) * mask.long()
    return RolloutBatch([torch.tensor([49, 43, 49, 61]) for _ in lengths], ids, mask, lengths_t,
                        lengths_t >= width, torch.zeros(len(lengths), width))


def _train_step(module: GRPOModule, monkeypatch: pytest.MonkeyPatch,
                rollouts: list[tuple[list[str], list[int]]]) -> dict[str, Any]:
    """Run one `training_step` whose rollouts are `rollouts` (texts, lengths), in order; return the advantages
    handed to the update and the zero-variance flags and resample count handed to the logger."""
    captured: dict[str, Any] = {}
    queue = list(rollouts)
    width = int(module.algo.max_completion_length)

    def rollout(records: Sequence[Mapping[str, Any]], group_size: int, *args: Any, **kwargs: Any) -> Any:
        texts, lengths = queue.pop(0)
        assert len(texts) == len(records) * group_size
        rows = [r for r in records for _ in range(group_size)]
        return _batch(lengths, width), rows, texts

    def update(batch: RolloutBatch, advantages: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, float]:
        captured["advantages"] = advantages.detach().double().clone()
        return {}

    def log_step(*args: Any, **kwargs: Any) -> float:
        names = ("rewards", "by_name", "errors", "advantages", "batch", "zero_std", "stats", "timings", "resamples")
        captured.update({**dict(zip(names, args)), **kwargs})
        return 1.0

    monkeypatch.setattr(module, "_rollout", rollout)
    monkeypatch.setattr(module, "_update", update)
    monkeypatch.setattr(module, "_log_step", log_step)
    monkeypatch.setattr(module, "_collapse_canary", lambda std: None)
    module.training_step(module.train_records[:1], 0)
    return captured


def _close(actual: torch.Tensor, expected: Sequence[float]) -> None:
    torch.testing.assert_close(actual.detach().double(), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# GDPO and the reward shaping around it


def test_gdpo_normalises_the_soft_overlong_penalty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every completion is right (the one component is constant, GDPO's z-score of it is 0), but lengths
    # 2, 3, 6, 8 with L_max = 8, L_cache = 4 earn overlong penalties 0, 0, −0.5, −1 (free up to 4, then
    # (4 − |y|)/4). As its own component: mean −0.375, deviations .375, .375, −.125, −.625, unbiased std
    # sqrt(0.6875/3) = 0.4787136; z = dev/(0.4787136 + 1e-4) = .7831858, .7831858, −.2610619, −1.3053097; the batch
    # step divides by their std 0.9997912 (+1e-4): .7832711, .7832711, −.2610904, −1.3054518.
    # Before the fix the penalty only entered `total`, which GDPO does not read: every advantage was 0.
    module = _module(tmp_path, {"test_loop_first": 1.0}, advantage="gdpo", max_completion_length=8,
                     overlong={"enabled": True, "cache_len": 4})
    out = _train_step(module, monkeypatch, [(["1"] * 4, [2, 3, 6, 8])])
    _close(out["advantages"], [0.7832711, 0.7832711, -0.2610904, -1.3054518])
    assert out["zero_std"].tolist() == [False]
    assert "overlong_penalty" in out["by_name"]  # logged as grpo/reward/overlong_penalty/{mean,std}


def test_gdpo_applies_the_reward_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The component scores 1 everywhere, the gate (test_gate_ok) is 1, 1, 0, 0: R = G·Σ w R_k = 1, 1, 0, 0. Under
    # GDPO the gate multiplies each component, so the gated component is 1, 1, 0, 0: z = ±0.5/(0.5773503 + 1e-4)
    # = ±0.8658754, batch std 0.8658754·sqrt(4/3) = 0.9998388 -> ±0.8658754/(0.9998388 + 1e-4) = ±0.8659388.
    # Before the fix GDPO read the ungated component (constant): every advantage 0.
    module = _module(tmp_path, {"test_loop_first": 1.0}, gate="test_gate_ok", advantage="gdpo")
    out = _train_step(module, monkeypatch, [(["1 ok", "1 ok", "1", "1"], [3, 3, 3, 3])])
    _close(out["advantages"], [0.8659388, 0.8659388, -0.8659388, -0.8659388])
    _close(out["rewards"].reshape(-1).double(), [1.0, 1.0, 0.0, 0.0])


def test_dynamic_sampling_keeps_a_group_whose_gdpo_components_vary(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Components (1, 0), (0, 2), (1, 0), (0, 2) with weights 1 and 0.5: the total is 1 everywhere, but GDPO
    # normalises each component first: z_1 = ±0.5/(0.5773503 + 1e-4) = ±0.8658754, z_2 = ∓1/(1.1547005 + 1e-4)
    # = ∓0.8659880; S = z_1 + 0.5·z_2 = ±0.4329002; batch std 0.4329002·sqrt(4/3) = 0.4998701
    # -> ±0.4329002/(0.4998701 + 1e-4) = ±0.8658522. The group has a gradient, so dynamic sampling must keep it.
    # Before the fix the filter looked at the total, called it zero-variance and resampled it (this test's
    # rollout queue then runs dry).
    module = _module(tmp_path, {"test_loop_first": 1.0, "test_loop_second": 0.5}, advantage="gdpo",
                     dynamic_sampling={"enabled": True, "max_resamples": 1})
    out = _train_step(module, monkeypatch, [(["1 0", "0 2", "1 0", "0 2"], [3, 3, 3, 3])])
    assert out["zero_std"].tolist() == [False] and out["resamples"] == 0
    _close(out["advantages"], [0.8658522, -0.8658522, 0.8658522, -0.8658522])


def test_dynamic_sampling_under_grpo_still_looks_at_the_total(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The same completions under advantage=grpo: the combined reward is constant, so the group is replaced.
    module = _module(tmp_path, {"test_loop_first": 1.0, "test_loop_second": 0.5}, advantage="grpo",
                     dynamic_sampling={"enabled": True, "max_resamples": 1})
    out = _train_step(module, monkeypatch, [(["1 0", "0 2", "1 0", "0 2"], [3, 3, 3, 3]),
                                            (["1 2", "0 0", "0 0", "0 0"], [3, 3, 3, 3])])
    assert out["resamples"] == 1 and out["zero_std"].tolist() == [False]
    # Replacement group: totals 2, 0, 0, 0 -> mean 0.5, unbiased std 1 -> 1.5/1.0001, −0.5/1.0001.
    _close(out["advantages"], [1.4998500, -0.4999500, -0.4999500, -0.4999500])


# ---------------------------------------------------------------------------------------------------------------
# Not-applicable rewards (None) leave the group baseline


@pytest.mark.parametrize(("advantage", "expected"), [
    # values 1, 0 and two n/a: mean 0.5, unbiased std sqrt(0.5) -> ±0.5/(0.7071068 + 1e-4) = ±0.7070068
    ("grpo", [0.7070068, -0.7070068, 0.0, 0.0]),
    # leave-one-out over the applicable rewards only: 1 − 0 = 1, 0 − 1 = −1
    ("rloo", [1.0, -1.0, 0.0, 0.0]),
    # z = ±0.7070068 on rows 0-1, rows 2-3 leave the batch step: std 0.7070068·sqrt(2) = 0.9998586
    # -> ±0.7070068/(0.9998586 + 1e-4) = ±0.7070361
    ("gdpo", [0.7070361, -0.7070361, 0.0, 0.0]),
])
def test_not_applicable_rows_leave_the_group_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      advantage: str, expected: list[float]) -> None:
    # Before the fix the two n/a rows scored 0 and pulled the baseline to 0.25 (grpo: 1.4997, −0.4999 ×3).
    module = _module(tmp_path, {"test_loop_first": 1.0}, advantage=advantage)
    out = _train_step(module, monkeypatch, [(["1", "0", "na", "na"], [2, 2, 2, 2])])
    _close(out["advantages"], expected)
    assert out["zero_std"].tolist() == [False]


def test_a_group_where_nothing_applies_is_zero_variance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, {"test_loop_first": 1.0}, advantage="grpo")
    out = _train_step(module, monkeypatch, [(["na"] * 4, [2, 2, 2, 2])])
    _close(out["advantages"], [0.0, 0.0, 0.0, 0.0])
    assert out["zero_std"].tolist() == [True]


# ---------------------------------------------------------------------------------------------------------------
# Uneven micro-batches


class _Recorder:
    """Stands in for the optimizer: keeps the gradient at each step instead of stepping."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params, self.grads = params, []
        self.param_groups = [{"lr": 0.0}]

    def step(self) -> None:
        self.grads.append(torch.cat([p.grad.reshape(-1) for p in self.params if p.grad is not None]).clone())

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_uneven_micro_batches_give_the_full_batch_gradient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           loss_type: str) -> None:
    """24 completions of unequal lengths in micro-batches of 16 + 8 give the gradient of one micro-batch of 24
    (before the fix each chunk was divided by the number of chunks, 2, over-weighting the 8-row chunk)."""
    module = _module(tmp_path, {"test_loop_first": 1.0}, loss_type=loss_type, max_completion_length=6,
                     entropy_coef=0.01)
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(world_size=1, global_rank=0, global_step=0))
    monkeypatch.setattr(module, "manual_backward", lambda loss: loss.backward())
    monkeypatch.setattr(module, "lr_schedulers", lambda: SimpleNamespace(step=lambda: None))
    recorder = _Recorder([p for p in module.policy.parameters() if p.requires_grad])
    monkeypatch.setattr(module, "optimizers", lambda: recorder)
    lengths = [1 + (i * 5) % 6 for i in range(24)]
    batch = _batch(lengths, 6, seed=1)
    advantages = torch.randn(24, generator=torch.Generator().manual_seed(2))
    for micro in (24, 16):
        module.algo.micro_batch_size = micro
        module._update(batch, advantages, None, None)
    full, split = recorder.grads
    assert full.abs().max() > 0
    torch.testing.assert_close(split, full, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# A knob without effect under the chosen mode


def test_a_knob_without_effect_is_announced(compose, caplog: pytest.LogCaptureFixture) -> None:
    from aegir.config import validate

    with caplog.at_level(logging.WARNING):
        validate(compose(["+experiment=grpo_toy", "algo.advantage=gdpo", "algo.scale_rewards=none"], fast=False))
    notices = [r.getMessage() for r in caplog.records if "algo.scale_rewards" in r.getMessage()]
    assert len(notices) == 1 and "no effect" in notices[0] and "algo.advantage=gdpo" in notices[0], notices
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        validate(compose(["+experiment=grpo_toy", "algo.advantage=grpo", "algo.scale_rewards=none"], fast=False))
    assert not [r for r in caplog.records if "no effect" in r.getMessage()]

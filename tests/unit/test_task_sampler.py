"""Multi-task samplers: hand-computed weight updates, bounds, exact batch proportions, resume, MT-GRPO IWU."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aegir.errors import InputError
from aegir.rl.task_sampler import (
    ImprovementAwareSampler,
    MTGRPOSampler,
    UniformSampler,
    build_task_sampler,
    largest_remainder_counts,
    project_to_bounds,
)

TASKS = ["a", "b", "c", "d"]


def rewards(*values: float) -> dict[str, float]:
    return dict(zip(TASKS, values))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- ImprovementAwareSampler ------------------------------------------------------------------------------------


def test_improvement_update_hand_computed():
    # improvements [0.0, 0.02, 0.10, 0.0]: a,d stalled (<0.01) ×1.3; b in band unchanged; c fast (>0.05) ×0.85.
    # v = [0.325, 0.25, 0.2125, 0.325], sum 1.1125 -> [26, 20, 17, 26] / 89, all inside [0.10, 0.60].
    s = ImprovementAwareSampler(TASKS, None, update_interval=10)
    assert s.update(0, rewards(0.5, 0.5, 0.5, 0.5)) is False  # baseline only
    assert s.update(10, rewards(0.5, 0.52, 0.60, 0.5)) is True
    expected = {"a": 26 / 89, "b": 20 / 89, "c": 17 / 89, "d": 26 / 89}
    assert s.weights == pytest.approx(expected, abs=1e-12)


def test_improvement_bounds_are_strict():
    s = ImprovementAwareSampler(TASKS, None, update_interval=1)
    s.update(0, rewards(0.0, 0.0, 0.0, 0.0))
    # exactly low / exactly high leave the weights alone; uniform change in the band keeps them uniform
    assert s.update(1, rewards(0.01, 0.05, 0.03, 0.02)) is False
    assert s.weights == pytest.approx(dict.fromkeys(TASKS, 0.25))


def test_cap_respected_after_renormalisation():
    # [0.55, .15, .15, .15]; a stalls ×1.3 -> 0.715, others ×0.85 -> 0.1275; renormalised a = 0.651 > cap,
    # so a = 0.60 and the rest share 0.40 equally.
    s = ImprovementAwareSampler(TASKS, {"a": 0.55, "b": 0.15, "c": 0.15, "d": 0.15}, update_interval=1)
    s.update(0, rewards(0, 0, 0, 0))
    s.update(1, rewards(0.0, 0.1, 0.1, 0.1))
    assert s.weights == pytest.approx({"a": 0.6, "b": 0.4 / 3, "c": 0.4 / 3, "d": 0.4 / 3}, abs=1e-12)


def test_floor_respected_after_renormalisation():
    # [0.3, 0.3, 0.3, 0.1]; a stalls ×1.3 -> 0.39, b/c in band, d fast ×0.85 -> 0.085.
    # Renormalised d = 0.079 < floor -> d = 0.10; a, b, c share 0.90 in ratio 39:30:30.
    s = ImprovementAwareSampler(TASKS, {"a": 0.3, "b": 0.3, "c": 0.3, "d": 0.1}, update_interval=1)
    s.update(0, rewards(0, 0, 0, 0))
    s.update(1, rewards(0.0, 0.03, 0.03, 0.2))
    assert s.weights == pytest.approx({"a": 39 / 110, "b": 27 / 99, "c": 27 / 99, "d": 0.1}, abs=1e-12)


def test_update_returns_false_when_projection_undoes_the_change():
    # [0.4, 0.4, 0.1, 0.1]; a, b ×1.3, c, d ×0.85 -> c, d fall under the floor and come back to 0.1.
    s = ImprovementAwareSampler(TASKS, {"a": 0.4, "b": 0.4, "c": 0.1, "d": 0.1}, update_interval=1)
    s.update(0, rewards(0, 0, 0, 0))
    assert s.update(1, rewards(0, 0, 0.1, 0.1)) is False
    assert s.weights == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.1, "d": 0.1})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.2, 0.3), min_size=4, max_size=4), st.integers(1, 30))
def test_weights_stay_bounded_and_normalised(deltas: list[float], n_updates: int):
    s = ImprovementAwareSampler(TASKS, None, update_interval=1)
    r = np.zeros(4)
    s.update(0, dict(zip(TASKS, r)))
    for step in range(1, n_updates + 1):
        r = r + np.array(deltas)
        s.update(step, dict(zip(TASKS, r)))
        w = np.array(list(s.weights.values()))
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(w <= 0.60 + 1e-12) and np.all(w >= 0.10 - 1e-12)


def test_update_interval_gates_updates():
    s = ImprovementAwareSampler(TASKS, None, update_interval=5)
    s.update(0, rewards(0, 0, 0, 0))
    assert s.update(3, rewards(0, 0, 1, 1)) is False  # not due: ignored, baseline kept
    assert s.weights == pytest.approx(dict.fromkeys(TASKS, 0.25))
    assert s.update(5, rewards(0, 0, 1, 1)) is True
    with pytest.raises(ValueError, match="backwards"):
        s.update(4, rewards(0, 0, 0, 0))


def test_infeasible_bounds_are_relaxed():
    one = ImprovementAwareSampler(["only"], None, update_interval=1)
    assert one.weights == {"only": 1.0}
    many = ImprovementAwareSampler([f"t{i}" for i in range(12)], None, update_interval=1)  # 12 × 0.10 > 1
    assert all(w == pytest.approx(1 / 12) for w in many.weights.values())


def test_project_to_bounds_exact():
    w = project_to_bounds([8.0, 1.0, 1.0], 0.1, 0.6)
    assert w.tolist() == pytest.approx([0.6, 0.2, 0.2])
    assert project_to_bounds([1.0, 1.0], 0.1, 0.6).tolist() == pytest.approx([0.5, 0.5])


# -- uniform ----------------------------------------------------------------------------------------------------


def test_uniform_stays_uniform():
    s = build_task_sampler("uniform", TASKS)
    assert isinstance(s, UniformSampler)
    s.update(0, rewards(0, 0, 0, 0))
    assert s.update(1, rewards(0.0, 0.5, 1.0, -1.0)) is False
    assert s.weights == pytest.approx(dict.fromkeys(TASKS, 0.25))
    assert s.task_counts(16) == dict.fromkeys(TASKS, 4)


# -- batch allocation -------------------------------------------------------------------------------------------


def test_sample_tasks_exact_proportions_n16():
    # 16 × [0.4, 0.3, 0.2, 0.1] = [6.4, 4.8, 3.2, 1.6] -> floors [6, 4, 3, 1] (14), the 2 left go to the largest
    # remainders b (.8) and d (.6) -> [6, 5, 3, 2].
    s = ImprovementAwareSampler(TASKS, {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}, update_interval=1)
    assert s.task_counts(16) == {"a": 6, "b": 5, "c": 3, "d": 2}
    batch = s.sample_tasks(16, gen(1))
    assert {t: batch.count(t) for t in TASKS} == {"a": 6, "b": 5, "c": 3, "d": 2}
    assert batch == s.sample_tasks(16, gen(1))  # deterministic given the generator
    assert batch != s.sample_tasks(16, gen(2))  # the generator only shuffles the order
    assert s.task_counts(10) == {"a": 4, "b": 3, "c": 2, "d": 1}  # 10 × 0.3 is 3, not 2 + remainder


def test_largest_remainder_ties_by_task_order():
    assert largest_remainder_counts(2, [0.25] * 4) == [1, 1, 0, 0]
    assert largest_remainder_counts(0, [0.5, 0.5]) == [0, 0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6), st.integers(0, 200))
def test_largest_remainder_within_one_of_quota(raw: list[float], n: int):
    w = np.array(raw) / sum(raw)
    counts = largest_remainder_counts(n, w.tolist())
    assert sum(counts) == n
    assert np.all(np.abs(np.array(counts) - n * w) < 1 + 1e-9)


# -- resume -----------------------------------------------------------------------------------------------------


def _drive(s, steps, start: int):
    out = []
    for i, step in enumerate(range(start, start + steps)):
        s.update(step, rewards(0.1 * i, 0.02 * i, 0.0, 0.07 * (i % 3)))
        out.append((s.weights, s.sample_tasks(12, gen(step))))
    return out


@pytest.mark.parametrize("kind", ["improvement", "mt_grpo", "uniform"])
def test_state_dict_round_trip_reproduces_updates_and_samples(kind: str):
    a = build_task_sampler(kind, TASKS, update_interval=1)
    _drive(a, 4, start=0)
    state = json.loads(json.dumps(a.state_dict()))  # must survive a JSON checkpoint
    b = build_task_sampler(kind, TASKS, update_interval=1)
    b.load_state_dict(state)
    assert _drive(a, 5, start=4) == _drive(b, 5, start=4)


def test_load_state_dict_rejects_other_tasks_or_kind():
    state = ImprovementAwareSampler(TASKS, None, 1).state_dict()
    with pytest.raises(InputError, match="tasks"):
        ImprovementAwareSampler(["a", "b"], None, 1).load_state_dict(state)
    with pytest.raises(InputError, match="kind"):
        MTGRPOSampler(TASKS).load_state_dict(state)


def test_metrics_names():
    s = ImprovementAwareSampler(TASKS, None, 1)
    assert s.metrics() == {f"sampler/{t}_weight": 0.25 for t in TASKS}


# -- MT-GRPO ----------------------------------------------------------------------------------------------------


def test_mt_grpo_iwu_hand_computed_from_rewards():
    # J(θ_t) = [0.2, 0.5, 0.8], J(θ_{t+1}) = [0.3, 0.5, 0.7] -> I = [0.1, 0, -0.1]
    # s = I + 0.2·J(θ_t) = [0.14, 0.10, 0.06]; z = 1/3 -> Σ z s = 0.10; g = [0.04, 0, -0.04] / 3
    # ξ = 0 - β·g with β = 3: [-0.04, 0, 0.04]; z = softmax(ξ)
    s = MTGRPOSampler(["x", "y", "w"], lambda_bias=0.2, lr=3.0)
    assert s.update(0, {"x": 0.2, "y": 0.5, "w": 0.8}) is False
    assert s.update(1, {"x": 0.3, "y": 0.5, "w": 0.7}) is True
    e = [math.exp(-0.04), 1.0, math.exp(0.04)]
    assert list(s.weights.values()) == pytest.approx([v / sum(e) for v in e], abs=1e-12)


def test_mt_grpo_iwu_with_measured_improvements_and_defaults():
    # Non-uniform z = [0.5, 0.25, 0.25]; I = [0.0, 0.2, 0.0]; J(θ_t) = [1.0, 0.0, 0.5]; λ = 0.2, β = 0.025.
    # s = [0.2, 0.2, 0.1]; Σ z s = 0.175; g = [0.5·0.025, 0.25·0.025, 0.25·(-0.075)] = [0.0125, 0.00625, -0.01875]
    s = MTGRPOSampler(["x", "y", "w"], initial={"x": 2, "y": 1, "w": 1})
    assert s.update(0, {"x": 1.0, "y": 0.0, "w": 0.5}, improvements={"x": 0.0, "y": 0.2, "w": 0.0}) is True
    xi = np.log([0.5, 0.25, 0.25]) - 0.025 * np.array([0.0125, 0.00625, -0.01875])
    z = np.exp(xi) / np.exp(xi).sum()
    assert list(s.weights.values()) == pytest.approx(z.tolist(), abs=1e-12)


def test_mt_grpo_equal_scores_leave_weights():
    s = MTGRPOSampler(TASKS)
    s.update(0, rewards(0.5, 0.5, 0.5, 0.5))
    assert s.update(1, rewards(0.6, 0.6, 0.6, 0.6)) is False


def test_mt_grpo_rp_sampler_acceptance_oversampling():
    s = MTGRPOSampler(["x", "y"], zero_grad_decay=0.5, max_accept=3.0)
    s.observe_zero_gradient({"x": 0.5, "y": 0.0})  # first observation taken as is
    # m = [min(1/0.5, 3), 1] = [2, 1]; z = [.5, .5] -> ẑ = [2/3, 1/3]
    assert s.generation_weights() == pytest.approx({"x": 2 / 3, "y": 1 / 3})
    s.update(0, {"x": 0.0, "y": 0.0}, zero_grad_rates={"x": 1.0, "y": 0.0})  # ρ̂_x = 0.75 -> m = min(4, 3) = 3
    assert s.generation_weights() == pytest.approx({"x": 0.75, "y": 0.25})
    assert s.metrics()["sampler/x_zero_grad_rate"] == pytest.approx(0.75)


def test_mt_grpo_rp_draws_are_multinomial_and_deterministic():
    s = MTGRPOSampler(TASKS, initial={"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1})
    targets = s.target_counts(32, gen(3))
    assert sum(targets.values()) == 32 and targets == s.target_counts(32, gen(3))
    batch = s.sample_tasks(4000, gen(4))
    assert batch == s.sample_tasks(4000, gen(4))
    freq = np.array([batch.count(t) for t in TASKS]) / 4000
    assert freq == pytest.approx([0.4, 0.3, 0.2, 0.1], abs=0.03)
    assert s.still_needed(targets, {"a": 100}) == {"a": 0, **{t: targets[t] for t in "bcd"}}


def test_mt_grpo_largest_remainder_allocation():
    s = MTGRPOSampler(TASKS, initial={"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}, allocation="largest_remainder")
    assert s.target_counts(16, gen(0)) == {"a": 6, "b": 5, "c": 3, "d": 2}
    batch = s.sample_tasks(16, gen(0))
    assert {t: batch.count(t) for t in TASKS} == {"a": 6, "b": 5, "c": 3, "d": 2}


# -- config errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "tasks", "cfg", "match"),
    [
        ("bandit", TASKS, {}, "kind"),
        ("improvement", TASKS, {"upp": 1.2}, "unknown key"),
        ("improvement", ["a", "a"], {}, "duplicate"),
        ("improvement", TASKS, {"update_interval": 0}, "update_interval"),
        ("improvement", TASKS, {"floor": 0.7}, "floor/cap"),
        ("improvement", TASKS, {"initial": {"a": 1.0}}, "initial"),
        ("mt_grpo", TASKS, {"lr": -1.0}, "lr"),
    ],
)
def test_config_errors_are_input_errors(kind, tasks, cfg, match):
    with pytest.raises(InputError, match=match):
        build_task_sampler(kind, tasks, **cfg)


def test_missing_task_reward_is_a_value_error():
    s = ImprovementAwareSampler(TASKS, None, 1)
    with pytest.raises(ValueError, match="'d'"):
        s.update(0, {"a": 0, "b": 0, "c": 0})

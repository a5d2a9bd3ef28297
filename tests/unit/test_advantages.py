"""Hand-computed oracles for aegir.rl.advantages (docs/grpo.md, Advantages).

Running example: rewards [[1, 0, 0, 1], [2, 2, 2, 2]].
- group 0: mean 0.5, deviations ±0.5, unbiased std sqrt(1/3) = 0.5773503 -> ±0.5 / (0.5773503 + 1e-4) = ±0.8658754
- group 1: zero variance -> advantage 0 in every mode
- batch: all 8 rewards, mean 1.25, Σ(dev²) = 5.5, unbiased std sqrt(5.5/7) = 0.8864053
  -> ±0.5 / (0.8864053 + 1e-4) = ±0.5640124
"""

from __future__ import annotations

import pytest
import torch

from aegir.rl.advantages import (compute_advantages, frac_zero_std, gdpo_advantages, group_advantages,
                                 rloo_advantages, zero_std_groups)

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)


@pytest.mark.parametrize(("mode", "a"), [("group", 0.8658754297607016), ("batch", 0.5640124456324701),
                                         ("none", 0.5)])
def test_group_advantages_every_scale_mode(mode: str, a: float) -> None:
    expected = torch.tensor([[a, -a, -a, a], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(REWARDS, mode), expected, rtol=0, atol=1e-12)


def test_zero_variance_group_counted() -> None:
    assert zero_std_groups(REWARDS).tolist() == [False, True]
    assert frac_zero_std(REWARDS) == 0.5
    near_constant = torch.tensor([[0.3, 0.3 + 1e-9], [0.0, 1.0]], dtype=torch.float64)
    assert zero_std_groups(near_constant, atol=1e-6).tolist() == [True, False]
    assert zero_std_groups(near_constant, atol=1e-12).tolist() == [False, False]


def test_eps_is_added_to_std() -> None:
    # Group [0, 2]: std = sqrt(2) (unbiased), advantage ±1 / (sqrt(2) + 0.5).
    adv = group_advantages(torch.tensor([[0.0, 2.0]], dtype=torch.float64), "group", eps=0.5)
    torch.testing.assert_close(adv, torch.tensor([[-0.5224077499274828, 0.5224077499274828]], dtype=torch.float64))


def test_rloo_hand_values() -> None:
    # [1,0,0,1]: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3; the constant group gives 0.
    torch.testing.assert_close(rloo_advantages(REWARDS), torch.tensor(
        [[2 / 3, -2 / 3, -2 / 3, 2 / 3], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    # [3,0,1]: 3 - (0+1)/2 = 2.5, 0 - (3+1)/2 = -2, 1 - (3+0)/2 = -0.5; equals G/(G-1)·(r - mean) = 1.5·(r - 4/3).
    torch.testing.assert_close(rloo_advantages(torch.tensor([[3.0, 0.0, 1.0]], dtype=torch.float64)),
                               torch.tensor([[2.5, -2.0, -0.5]], dtype=torch.float64))


def test_gdpo_distinguishes_what_sum_then_normalize_collapses() -> None:
    # Two binary rewards, weights 1. Group X earns only the first reward on completions 0 and 2: components
    # (1,0),(0,0),(1,0),(0,0) -> sums [1,0,1,0]. Group Y earns both: (1,1),(0,0),(1,1),(0,0) -> sums [2,0,2,0].
    components = torch.tensor([[[1, 0], [0, 0], [1, 0], [0, 0]],
                               [[1, 1], [0, 0], [1, 1], [0, 0]]], dtype=torch.float64)
    summed = group_advantages(components.sum(-1), "group")
    # Both ±0.866 (they differ only through eps: 0.5/(0.577+1e-4) vs 1/(1.155+1e-4)): Y's extra reward is invisible.
    torch.testing.assert_close(summed[0], summed[1], rtol=0, atol=1e-4)

    # GDPO: per component z-score a = 0.8658754 (X's second component is constant -> exactly 0);
    # S_X = [a,-a,a,-a], S_Y = [2a,-2a,2a,-2a]; batch mean 0, unbiased batch std = a·sqrt(20/7);
    # Â = S / (a·sqrt(20/7) + 1e-4): X -> ±0.5915676, Y -> ±1.1831351.
    x, y = 0.5915675595527233, 1.1831351191054467
    expected = torch.tensor([[x, -x, x, -x], [y, -y, y, -y]], dtype=torch.float64)
    gdpo = gdpo_advantages(components, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(gdpo, expected, rtol=0, atol=1e-12)
    assert gdpo[1, 0] > gdpo[0, 0]
    torch.testing.assert_close(compute_advantages("gdpo", components), expected, rtol=0, atol=1e-12)


def test_gdpo_weights_scale_components() -> None:
    # Weight 0 on the second reward makes group Y look like group X: S = ±a in both groups, batch Σ dev² = 8a²,
    # unbiased batch std = a·sqrt(8/7), so every advantage is ±a / (a·sqrt(8/7) + 1e-4).
    components = torch.tensor([[[1, 0], [0, 0], [1, 0], [0, 0]],
                               [[1, 1], [0, 0], [1, 1], [0, 0]]], dtype=torch.float64)
    adv = gdpo_advantages(components, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(adv[0], adv[1])
    v = 0.9353133038121461  # a / (a·sqrt(8/7) + 1e-4), a = 0.8658754297607016
    torch.testing.assert_close(adv[0], torch.tensor([v, -v, v, -v], dtype=torch.float64), rtol=0, atol=1e-12)


def test_dispatcher_combines_components_for_grpo_and_rloo() -> None:
    components = torch.stack([REWARDS, 2 * REWARDS], dim=-1)  # weighted sum with w = [1, 0.5] = 2·REWARDS
    weights = torch.tensor([1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(compute_advantages("grpo", components, weights=weights, scale_rewards="none"),
                               group_advantages(2 * REWARDS, "none"))
    torch.testing.assert_close(compute_advantages("rloo", components, weights=weights), rloo_advantages(2 * REWARDS))
    torch.testing.assert_close(compute_advantages("grpo", REWARDS), group_advantages(REWARDS, "group"))
    assert compute_advantages("grpo", REWARDS).shape == (2, 4)


@pytest.mark.parametrize("bad", [
    lambda: group_advantages(REWARDS, "unknown"),  # type: ignore[arg-type]
    lambda: group_advantages(torch.tensor([[1.0], [2.0]])),
    lambda: group_advantages(torch.tensor([[1.0, float("inf")]])),
    lambda: compute_advantages("ppo", REWARDS),  # type: ignore[arg-type]
    lambda: gdpo_advantages(torch.ones(2, 3, 2), torch.ones(3)),
])
def test_invalid_inputs_raise(bad) -> None:
    with pytest.raises(ValueError):
        bad()


# ---------------------------------------------------------------------------------------------------------------
# Not-applicable rewards (NaN, TRL's None): left out of every mean and std, advantage 0 (nanmean / nanstd).
NAN = float("nan")
# Group 0 = [1, 0, n/a, n/a]: mean 0.5 over the two finite rewards, unbiased std sqrt(0.5) = 0.7071068
#   -> ±0.5 / (0.7071068 + 1e-4) = ±0.7070068 ("group"); ±0.5 ("none").
# Group 1 = [2, 2, 2, 2]: zero variance -> 0.
# "batch": finite rewards 1, 0, 2, 2, 2, 2: mean 1.5, Σ dev² = 3.5, unbiased std sqrt(3.5/5) = 0.8366600
#   -> ±0.5 / (0.8366600 + 1e-4) = ±0.5975429.
PARTIAL = torch.tensor([[1.0, 0.0, NAN, NAN], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)


@pytest.mark.parametrize(("mode", "a"), [("group", 0.7070067953266834), ("batch", 0.5975428846320952),
                                         ("none", 0.5)])
def test_not_applicable_rewards_leave_the_baseline(mode: str, a: float) -> None:
    expected = torch.tensor([[a, -a, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(PARTIAL, mode), expected, rtol=0, atol=1e-12)


def test_rloo_baseline_counts_applicable_rewards_only() -> None:
    # [1, 0, n/a, n/a]: 1 − 0/1 = 1, 0 − 1/1 = −1; n/a rows 0. A group with one finite reward has no baseline.
    torch.testing.assert_close(rloo_advantages(PARTIAL), torch.tensor(
        [[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(rloo_advantages(torch.tensor([[3.0, NAN, NAN]], dtype=torch.float64)),
                               torch.zeros(1, 3, dtype=torch.float64))


def test_gdpo_ignores_not_applicable_components() -> None:
    # Component 1 applies to rows 0-1 ([1, 0]), component 2 to rows 2-3 ([1, 0]): each z-scores to ±a with
    # a = 0.7070068 (above); S = [a, −a, a, −a], batch mean 0, unbiased std a·sqrt(4/3)
    # -> ±a / (a·sqrt(4/3) + 1e-4) = ±0.8659193. Scoring n/a as 0 instead would give other values.
    components = torch.tensor([[[1.0, NAN], [0.0, NAN], [NAN, 1.0], [NAN, 0.0]]], dtype=torch.float64)
    v = 0.8659193357597248
    torch.testing.assert_close(gdpo_advantages(components), torch.tensor([[v, -v, v, -v]], dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_gdpo_row_where_nothing_applies_gets_zero_and_leaves_the_batch_statistics() -> None:
    # Component 1 = [1, 0, 1, n/a], component 2 never applies. Rows 0-2: mean 2/3, unbiased std sqrt(1/3);
    # z = (1 − 2/3)/(0.5773503 + 1e-4), (0 − 2/3)/(...) ; S = [z1, z0, z1] has mean 0 and is re-normalised over
    # these three rows only: [0.5772925, −1.1545851, 0.5772925]; row 3 gets 0.
    components = torch.tensor([[[1.0, NAN], [0.0, NAN], [1.0, NAN], [NAN, NAN]]], dtype=torch.float64)
    expected = torch.tensor([[0.577292529937632, -1.154585059875264, 0.577292529937632, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(gdpo_advantages(components), expected, rtol=0, atol=1e-12)


def test_combine_components_is_a_nansum() -> None:
    components = torch.tensor([[[1.0, NAN], [NAN, NAN], [0.5, 2.0]]], dtype=torch.float64)
    combined = compute_advantages("grpo", components, weights=torch.tensor([1.0, 0.5]), scale_rewards="none")
    # r = [1, n/a, 0.5 + 1 = 1.5]: mean 1.25 over the two that apply -> [−0.25, 0, 0.25]
    torch.testing.assert_close(combined, torch.tensor([[-0.25, 0.0, 0.25]], dtype=torch.float64))


def test_zero_std_of_components_looks_at_every_weighted_component() -> None:
    # Totals agree (1 everywhere) but the components do not: GDPO still has a gradient there.
    components = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, NAN]]],
                              dtype=torch.float64)
    assert zero_std_groups(components).tolist() == [False, True, True]
    assert zero_std_groups(torch.nansum(components, -1)).tolist() == [True, True, False]
    assert zero_std_groups(components, weights=torch.tensor([0.0, 1.0])).tolist() == [False, True, True]
    assert zero_std_groups(PARTIAL).tolist() == [False, True]
    assert zero_std_groups(torch.tensor([[1.0, NAN]], dtype=torch.float64)).tolist() == [True]

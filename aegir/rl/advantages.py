"""Per-sequence advantages for group-sampled completions (GRPO, Dr. GRPO, Lite-PPO, GDPO, RLOO).

Layout convention: rewards are ``[n_groups, group_size]`` -- row g holds the G completions sampled for prompt g
(flat, group-contiguous rollouts become this with ``rewards.view(-1, G)``). Multi-reward inputs are
``[n_groups, group_size, K]``. Groups never span ranks, so every function here works on a local batch of whole
groups; "batch" statistics are statistics of that local batch.

Conventions (docs/grpo.md, Advantages):
- std is Bessel-corrected (unbiased, ddof=1), as TRL's ``nanstd``/``torch.std``; hence ``group_size >= 2``.
- eps = 1e-4 by default (TRL), added to the std, not to the variance.
- NaN means "this reward does not apply to this completion" (TRL's None -> NaN). A NaN reward is left out of
  every mean and std it would enter (TRL's nanmean / nanstd, Bessel over the finite values), and its completion
  gets advantage 0 from it. A group with fewer than two finite rewards has no baseline and gives advantage 0.
  Infinite rewards are refused.

Each function returns one scalar per completion, ``[n_groups, group_size]``; broadcasting over tokens happens in
the loss.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

ScaleRewards = Literal["group", "batch", "none"]
AdvantageKind = Literal["grpo", "gdpo", "rloo"]

DEFAULT_EPS = 1e-4


def _check_groups(rewards: Tensor, ndim: int) -> None:
    """Shape and value contract shared by all estimators."""
    if rewards.ndim != ndim:
        raise ValueError(f"expected rewards with {ndim} dims, got shape {tuple(rewards.shape)}")
    if rewards.shape[1] < 2:
        raise ValueError(f"group_size must be >= 2 (Bessel std, leave-one-out), got {rewards.shape[1]}")
    if not rewards.is_floating_point():
        raise ValueError(f"rewards must be a floating tensor, got {rewards.dtype}")
    if torch.isinf(rewards).any():
        raise ValueError("rewards must be finite or NaN (not applicable); got inf")


def _nan_stats(values: Tensor, dim: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """(nanmean, nanstd with Bessel's correction, count of finite values) over `dim` (all values if None), with
    keepdim. Where fewer than two values are finite the std is undefined; it is returned as 1 there, which is
    harmless because every centred finite value of such a slice is exactly 0."""
    present = ~torch.isnan(values)
    filled = torch.where(present, values, torch.zeros_like(values))
    if dim is None:
        count = present.sum().to(values.dtype)
        mean = filled.sum() / count.clamp(min=1.0)
        squares = torch.where(present, (values - mean).square(), torch.zeros_like(values)).sum()
    else:
        count = present.sum(dim=dim, keepdim=True).to(values.dtype)
        mean = filled.sum(dim=dim, keepdim=True) / count.clamp(min=1.0)
        squares = torch.where(present, (values - mean).square(), torch.zeros_like(values)).sum(dim=dim, keepdim=True)
    std = torch.where(count >= 2, (squares / (count - 1).clamp(min=1.0)).sqrt(), torch.ones_like(squares))
    return mean, std, count


def group_advantages(rewards: Tensor, scale_rewards: ScaleRewards = "group", eps: float = DEFAULT_EPS) -> Tensor:
    """TRL ``sum_then_normalize`` advantage (docs/grpo.md, grpo; Dr. GRPO = "none"; Lite-PPO = "batch").

    A_i = r_i − μ_g, then
      "group": A_i / (σ_g + eps)       σ_g = unbiased std of the group   (DeepSeekMath GRPO)
      "batch": A_i / (σ_B + eps)       σ_B = unbiased std of all rewards in the local batch (the mean stays μ_g)
      "none":  A_i                     (Dr. GRPO: no difficulty bias from ÷std)
    A zero-variance group gets exactly 0 in every mode (its numerator is 0). NaN rewards (not applicable) are
    left out of μ_g, σ_g and σ_B, and their completions get A = 0.
    """
    _check_groups(rewards, 2)
    mean, group_std, _ = _nan_stats(rewards, dim=1)
    centered = rewards - mean
    if scale_rewards == "group":
        advantages = centered / (group_std + eps)
    elif scale_rewards == "batch":
        advantages = centered / (_nan_stats(rewards, dim=None)[1] + eps)
    elif scale_rewards == "none":
        advantages = centered
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}")
    return torch.nan_to_num(advantages, nan=0.0)


def gdpo_advantages(component_rewards: Tensor, weights: Tensor | None = None, eps: float = DEFAULT_EPS) -> Tensor:
    """GDPO / TRL ``normalize_then_sum`` (docs/grpo.md, gdpo): normalise each reward within its group, sum, then
    normalise over the batch, so distinct reward combinations keep distinct advantages.

    Â_{g,i,k} = (R_{g,i,k} − mean_i R_{g,·,k}) / (std_i R_{g,·,k} + eps)     per component k, within group g
    S_{g,i}   = Σ_k w_k Â_{g,i,k}
    A_{g,i}   = (S_{g,i} − mean_batch S) / (std_batch S + eps)              (keeps scale independent of K)
    A component constant within a group has a zero numerator, so it contributes exactly 0 to S for that group
    (no special-casing). ``scale_rewards`` does not apply. std is unbiased throughout.

    Not-applicable rewards (NaN): a NaN R_{g,i,k} is left out of its component's group mean and std and adds 0
    to S_{g,i}; a completion none of whose components applies is left out of the batch mean and std of S and
    gets A = 0 (TRL's nanmean / nanstd, which TRL's own batch step applies to the nansum instead).
    """
    _check_groups(component_rewards, 3)
    n_components = component_rewards.shape[2]
    if weights is None:
        weights = torch.ones(n_components, dtype=component_rewards.dtype, device=component_rewards.device)
    weights = torch.as_tensor(weights, dtype=component_rewards.dtype, device=component_rewards.device)
    if weights.shape != (n_components,):
        raise ValueError(f"weights must have shape ({n_components},), got {tuple(weights.shape)}")
    mean, std, _ = _nan_stats(component_rewards, dim=1)
    per_component = torch.nan_to_num((component_rewards - mean) / (std + eps), nan=0.0)
    summed = (per_component * weights).sum(dim=2)
    applies = ~torch.isnan(component_rewards).all(dim=2)
    summed = torch.where(applies, summed, torch.full_like(summed, math.nan))
    batch_mean, batch_std, _ = _nan_stats(summed, dim=None)
    return torch.nan_to_num((summed - batch_mean) / (batch_std + eps), nan=0.0)


def rloo_advantages(rewards: Tensor) -> Tensor:
    """REINFORCE leave-one-out (docs/grpo.md, rloo; verl ``rloo``): each completion's baseline is the mean reward of the
    *other* G−1 completions of its group, which keeps the baseline independent of the sample it scores.

    A_i = r_i − (Σ_{j≠i} r_j)/(G−1) = G/(G−1) · (r_i − μ_g)      (no std scaling, no extra factor)
    With NaN (not applicable) rewards the sum and G run over the group's n finite rewards only; a NaN reward,
    or a group with n < 2, gives A = 0.
    """
    _check_groups(rewards, 2)
    present = ~torch.isnan(rewards)
    filled = torch.where(present, rewards, torch.zeros_like(rewards))
    count = present.sum(dim=1, keepdim=True).to(rewards.dtype)
    others_mean = (filled.sum(dim=1, keepdim=True) - filled) / (count - 1).clamp(min=1.0)
    return torch.where(present & (count >= 2), rewards - others_mean, torch.zeros_like(rewards))


def zero_std_groups(rewards: Tensor, atol: float = 1e-6, weights: Tensor | None = None) -> Tensor:
    """Bool mask ``[n_groups]``: groups whose rewards all agree (unbiased std ≤ atol). Such groups give zero
    advantage, hence zero policy gradient: the DAPO dynamic-sampling filter and the ``frac_reward_zero_std``
    metric. Always computed per group, whatever the scaling mode.

    ``rewards`` is what the advantage normalises: ``[n_groups, G]`` (grpo, rloo: the combined reward) or
    ``[n_groups, G, K]`` (gdpo: the components), where a group is zero-variance only if every component with a
    non-zero weight agrees within it (GDPO then gives it S = 0 on every row, hence A = 0). NaN (not applicable)
    values are ignored; a group with fewer than two finite values counts as zero-variance."""
    if rewards.ndim == 3:
        _check_groups(rewards, 3)
        _, std, count = _nan_stats(rewards, dim=1)
        varies = ((std > atol) & (count >= 2)).squeeze(1)
        if weights is not None:
            varies = varies & (torch.as_tensor(weights, device=rewards.device) != 0)
        return ~varies.any(dim=1)
    _check_groups(rewards, 2)
    _, std, count = _nan_stats(rewards, dim=1)
    return ((std <= atol) | (count < 2)).squeeze(1)


def frac_zero_std(rewards: Tensor, atol: float = 1e-6) -> float:
    """Fraction of groups with zero reward std (equal to the fraction of samples, since groups are equal-sized)."""
    return zero_std_groups(rewards, atol).float().mean().item()


def combine_components(component_rewards: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted sum over the reward axis, r_i = Σ_k w_k R_{i,k} (TRL ``sum_then_normalize``):
    ``[n_groups, G, K] -> [n_groups, G]``; a 2-D input is already a single reward and is returned unchanged.
    NaN (not applicable) components drop out of the sum; a completion none of whose components applies gets NaN."""
    if component_rewards.ndim == 2:
        if weights is not None and torch.as_tensor(weights).numel() != 1:
            raise ValueError("a single reward [n_groups, G] takes at most one weight")
        return component_rewards if weights is None else component_rewards * torch.as_tensor(weights).reshape(())
    if component_rewards.ndim != 3:
        raise ValueError(f"expected [n_groups, G] or [n_groups, G, K] rewards, got {tuple(component_rewards.shape)}")
    n_components = component_rewards.shape[2]
    if weights is None:
        weights = torch.ones(n_components, dtype=component_rewards.dtype, device=component_rewards.device)
    weights = torch.as_tensor(weights, dtype=component_rewards.dtype, device=component_rewards.device)
    if weights.shape != (n_components,):
        raise ValueError(f"weights must have shape ({n_components},), got {tuple(weights.shape)}")
    summed = torch.nansum(component_rewards * weights, dim=2)
    applies = ~torch.isnan(component_rewards).all(dim=2)
    return torch.where(applies, summed, torch.full_like(summed, math.nan))


def compute_advantages(kind: AdvantageKind, rewards: Tensor, *, weights: Tensor | None = None,
                       scale_rewards: ScaleRewards = "group", eps: float = DEFAULT_EPS) -> Tensor:
    """Dispatch by estimator name; returns per-sequence advantages ``[n_groups, group_size]``.

    ``rewards`` is ``[n_groups, G]`` (one reward) or ``[n_groups, G, K]`` (K weighted components).
    - "grpo": weighted sum of components, then :func:`group_advantages` with ``scale_rewards``/``eps``.
    - "rloo": weighted sum of components, then :func:`rloo_advantages` (``scale_rewards``/``eps`` unused).
    - "gdpo": :func:`gdpo_advantages` per component (a 2-D input is one component; ``scale_rewards`` unused).
    """
    if kind == "grpo":
        return group_advantages(combine_components(rewards, weights), scale_rewards, eps)
    if kind == "rloo":
        return rloo_advantages(combine_components(rewards, weights))
    if kind == "gdpo":
        components = rewards.unsqueeze(-1) if rewards.ndim == 2 else rewards
        return gdpo_advantages(components, weights, eps)
    raise ValueError(f"advantage kind must be 'grpo', 'gdpo' or 'rloo', got {kind!r}")

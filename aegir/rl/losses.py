"""GRPO-family policy loss: clipped surrogate + KL penalty − entropy bonus, aggregated per ``loss_type``; plus the
DAPO length tools (overlong filtering, soft overlong punishment). Pure tensor functions.

Shapes: B sequences × T completion tokens. ``logp``, ``old_logp``, ``ref_logp``, ``entropy`` and ``mask`` are
``[B, T]`` (log-probs of the sampled tokens; mask 1 on completion tokens that count); ``advantages`` is ``[B]``
(one scalar per sequence, broadcast over its tokens, grpo.md §1.2).

Accumulation contract (grpo.md §1.4, §8.1.3):
- "grpo", "bnpo", "dr_grpo" normalise over the *local micro-batch* (TRL); the caller divides by the number of
  gradient-accumulation steps, as TRL does. "bnpo" therefore depends on how the batch is split.
- "dapo" divides by ``global_token_count / world_size``: ``global_token_count`` = active tokens of the whole
  generation batch (every micro-batch, accumulation step and rank). The caller *sums* the micro-batch losses
  (plain backward() per micro-batch, no ÷GAS), and the ×world_size undoes DDP's gradient averaging, so the
  optimizer sees the gradient of Σ_all m·l / N_tok -- independent of micro-batching, GAS and world size
  (TRL's N_tok/P, verl's token-mean × dp_size).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
KLKind = Literal["k1", "k2", "k3"]


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k3") -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from tokens sampled from π_θ (grpo.md §1.3 step 4, §2.4, §4.1).

    With d = logπ_ref − logπ_θ:
      k1 ("kl")         = −d = logπ_θ − logπ_ref            unbiased, high variance, can be negative
      k2 ("mse")        = ½ d²                              biased, ≥ 0
      k3 ("low_var_kl") = exp(d) − d − 1                    unbiased, ≥ 0 (TRL; verl without its ±10 clamp)
    k3 is computed as expm1(d) − d, which keeps it ≥ 0 in floating point for small |d| (exp(d) − 1 rounds to < d).
    """
    diff = ref_logp - logp
    if kind == "k1":
        return -diff
    if kind == "k2":
        return 0.5 * diff.square()
    if kind == "k3":
        return torch.expm1(diff) - diff
    raise ValueError(f"kl kind must be 'k1', 'k2' or 'k3', got {kind!r}")


def mask_truncated(mask: Tensor, truncated: Tensor) -> Tensor:
    """Zero the loss mask of completions that hit the length limit (TRL ``mask_truncated_completions``, DAPO
    overlong filtering, grpo.md §1.1, §4.3): a truncated answer is not evidence of a bad answer. The rewards of
    such completions still count in their group's baseline; only their tokens leave the loss."""
    if truncated.shape != mask.shape[:1]:
        raise ValueError(f"truncated must have shape ({mask.shape[0]},), got {tuple(truncated.shape)}")
    return mask * (~truncated.bool()).unsqueeze(1).to(mask.dtype)


def soft_overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """DAPO soft overlong punishment (grpo.md §4.3; TRL ``get_soft_overlong_punishment``), a reward *added* to
    the task reward; it ramps linearly to −1 over the last ``cache_len`` tokens instead of a cliff at ``max_len``.

      R(|y|) = 0                                   if |y| ≤ L_max − L_cache
             = ((L_max − L_cache) − |y|) / L_cache  if L_max − L_cache < |y| ≤ L_max
             = −1                                  if |y| > L_max
    """
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"need 0 <= cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    lengths = lengths if lengths.is_floating_point() else lengths.to(torch.get_default_dtype())
    free = max_len - cache_len
    ramp = (free - lengths) / max(cache_len, 1)
    penalty = torch.where(lengths <= free, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_len, torch.full_like(lengths, -1.0), penalty)


def _aggregate(per_token: Tensor, mask: Tensor, loss_type: LossType, max_completion_length: int | None,
               global_token_count: float | Tensor | None, world_size: int) -> Tensor:
    """Reduce masked per-token losses to a scalar exactly as in grpo.md §1.4 (without TRL's ÷GAS):
      grpo:    (1/B) Σ_i [Σ_t m·l / max(Σ_t m, 1)]
      bnpo:    Σ m·l / max(Σ m, 1)
      dr_grpo: Σ m·l / (B · L_max)
      dapo:    Σ m·l / (N_tok / P) = Σ m·l · P / N_tok
    """
    masked_sum = per_token.sum()
    if loss_type == "grpo":
        per_sequence = per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return per_sequence.mean()
    if loss_type == "bnpo":
        return masked_sum / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if max_completion_length is None or max_completion_length <= 0:
            raise ValueError("loss_type 'dr_grpo' needs a positive max_completion_length")
        return masked_sum / (mask.shape[0] * max_completion_length)
    if loss_type == "dapo":
        if global_token_count is None:
            raise ValueError("loss_type 'dapo' needs global_token_count (active tokens of the whole generation batch)")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        count = torch.as_tensor(global_token_count, dtype=per_token.dtype, device=per_token.device).clamp(min=1.0)
        return masked_sum * world_size / count
    raise ValueError(f"loss_type must be 'grpo', 'bnpo', 'dr_grpo' or 'dapo', got {loss_type!r}")


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, clip_eps_low: float = 0.2,
                clip_eps_high: float | None = None, loss_type: LossType = "dapo",
                max_completion_length: int | None = None, ref_logp: Tensor | None = None, kl_coef: float = 0.0,
                kl_estimator: KLKind = "k3", entropy: Tensor | None = None, entropy_coef: float = 0.0,
                global_token_count: float | Tensor | None = None, world_size: int = 1
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped-surrogate GRPO loss for one micro-batch (grpo.md §1.3, §2.3, §4.3 clip-higher).

    Per token, with ρ = exp(logπ_θ − logπ_old) and A broadcast over the sequence:
      l = −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·KL(π_θ‖π_ref) − c_H·H
    then reduced by ``loss_type`` (see :func:`_aggregate` and the module docstring for the accumulation and DDP
    contract; ``world_size`` only matters for "dapo"). The KL and entropy terms are aggregated the same way as
    the surrogate, so every term is invariant under the same splits. ``clip_eps_high=None`` means ε_high = ε_low.

    Masked positions never influence the loss or its gradient (their log-ratios and KL differences are zeroed
    before exp, so padding garbage cannot produce inf·0 = NaN).

    Returns ``(loss, stats)``; stats are detached per-micro-batch *sums* over active tokens, so the caller can
    reduce them exactly across micro-batches and ranks (metric = Σ sum / Σ token_count):
      token_count, seq_count, pg_loss_sum (surrogate term only),
      clip_low_sum    (ρ < 1−ε_low and A < 0; TRL clip_ratio/low_mean),
      clip_high_sum   (ρ > 1+ε_high and A > 0; TRL clip_ratio/high_mean),
      clip_region_sum (either; TRL clip_ratio/region_mean),
      kl_sum (only when ref_logp is given), entropy_sum (only when entropy is given).
    """
    if logp.ndim != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(f"logp, old_logp and mask must share one [B, T] shape, got "
                         f"{tuple(logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must have shape ({logp.shape[0]},), got {tuple(advantages.shape)}")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError("kl_coef != 0 needs ref_logp")
    if entropy_coef != 0.0 and entropy is None:
        raise ValueError("entropy_coef != 0 needs entropy")
    eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high

    active = mask.bool()
    weight = active.to(logp.dtype)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    adv = advantages.to(logp.dtype).unsqueeze(1)

    ratio = torch.exp(torch.where(active, logp - old_logp, zero))
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps_low, 1.0 + eps_high) * adv)
    pg_per_token = torch.where(active, -surrogate, zero)
    per_token = pg_per_token

    stats: dict[str, Tensor] = {}
    if ref_logp is not None:
        safe_logp, safe_ref = torch.where(active, logp, zero), torch.where(active, ref_logp, zero)
        kl = torch.where(active, kl_estimate(safe_logp, safe_ref, kl_estimator), zero)
        stats["kl_sum"] = kl.detach().sum()
        if kl_coef != 0.0:
            per_token = per_token + kl_coef * kl
    if entropy is not None:
        masked_entropy = torch.where(active, entropy, zero)
        stats["entropy_sum"] = masked_entropy.detach().sum()
        if entropy_coef != 0.0:
            per_token = per_token - entropy_coef * masked_entropy

    loss = _aggregate(per_token, weight, loss_type, max_completion_length, global_token_count, world_size)

    with torch.no_grad():
        low = (ratio < 1.0 - clip_eps_low) & (adv < 0) & active
        high = (ratio > 1.0 + eps_high) & (adv > 0) & active
        stats.update(
            token_count=weight.sum(),
            seq_count=torch.tensor(float(logp.shape[0]), dtype=logp.dtype, device=logp.device),
            pg_loss_sum=pg_per_token.detach().sum(),
            clip_low_sum=low.to(logp.dtype).sum(),
            clip_high_sum=high.to(logp.dtype).sum(),
            clip_region_sum=(low | high).to(logp.dtype).sum(),
        )
    return loss, stats

"""GRPO-family policy loss: clipped surrogate + KL penalty − entropy bonus, aggregated per ``loss_type``; plus the
DAPO length tools (overlong filtering, soft overlong punishment). Pure tensor functions.

Shapes: B sequences × T completion tokens. ``logp``, ``old_logp``, ``ref_logp``, ``entropy`` and ``mask`` are
``[B, T]`` (log-probs of the sampled tokens; mask 1 on completion tokens that count); ``advantages`` is ``[B]``
(one scalar per sequence, broadcast over its tokens; docs/grpo.md, Advantages).

Accumulation contract: the caller *sums* the micro-batch losses of a generation batch (plain backward() per
micro-batch) and every normaliser refers to the whole batch, so an uneven last micro-batch weighs each sequence
like the others.
- "grpo", "bnpo", "dr_grpo" take ``batch_size`` = sequences of the generation batch on this rank (default: this
  micro-batch is the whole batch). "grpo" and "dr_grpo" divide by it instead of the micro-batch's B, which makes
  them independent of micro-batching; "bnpo" takes each micro-batch's token mean weighted by its share of the
  sequences, B_mb / batch_size (TRL's ÷GAS when micro-batches are equal), so it still depends on the split
  unless every sequence has the same length.
- "dapo" divides by ``global_token_count / world_size``: ``global_token_count`` = active tokens of the whole
  generation batch (every micro-batch, accumulation step and rank), and the ×world_size undoes DDP's gradient
  averaging, so the optimizer sees the gradient of Σ_all m·l / N_tok -- independent of micro-batching, GAS and
  world size (TRL's N_tok/P, verl's token-mean × dp_size).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
KLKind = Literal["k1", "k2", "k3"]
EntropyNorm = Literal["token_mean", "loss_type"]
ImportanceSamplingLevel = Literal["token", "sequence"]


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k3") -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from tokens sampled from π_θ (docs/grpo.md, KL estimators).

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
    overlong filtering; docs/grpo.md, Rewards): a truncated answer is not evidence of a bad answer. The rewards of
    such completions still count in their group's baseline; only their tokens leave the loss."""
    if truncated.shape != mask.shape[:1]:
        raise ValueError(f"truncated must have shape ({mask.shape[0]},), got {tuple(truncated.shape)}")
    return mask * (~truncated.bool()).unsqueeze(1).to(mask.dtype)


def soft_overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """DAPO soft overlong punishment (docs/grpo.md, Rewards; TRL ``get_soft_overlong_punishment``), a reward *added* to
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


def high_entropy_threshold(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """The entropy above which a token is among the top ``quantile`` fraction of the active tokens ("Beyond the
    80/20 rule"; TRL ``top_entropy_quantile``): the (1 − quantile)-quantile of H over tokens with mask 1, linear
    interpolation (torch.quantile). Tokens with H ≥ threshold keep their policy-gradient term. ``quantile`` = 1
    gives the minimum (every token kept); no active token gives +inf."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"top_entropy_quantile must be in (0, 1], got {quantile}")
    values = entropy.detach()[mask.bool()]
    if values.dtype not in (torch.float32, torch.float64):  # torch.quantile takes these two only (bf16 entropies)
        values = values.float()
    if values.numel() == 0:
        return torch.tensor(math.inf, dtype=entropy.dtype, device=entropy.device)
    return torch.quantile(values, 1.0 - quantile).to(entropy.dtype)


def _aggregate(per_token: Tensor, mask: Tensor, loss_type: LossType, max_completion_length: int | None,
               global_token_count: float | Tensor | None, world_size: int, batch_size: int | None = None) -> Tensor:
    """Reduce masked per-token losses of one micro-batch (b sequences) to its share of the step loss, with
    B = ``batch_size`` (sequences of the generation batch on this rank; b when None):
      grpo:    (1/B) Σ_i [Σ_t m·l / max(Σ_t m, 1)]
      bnpo:    (b/B) · Σ m·l / max(Σ m, 1)
      dr_grpo: Σ m·l / (B · L_max)
      dapo:    Σ m·l / (N_tok / P) = Σ m·l · P / N_tok
    """
    masked_sum = per_token.sum()
    rows = mask.shape[0]
    total_rows = rows if batch_size is None else batch_size
    if total_rows < rows:
        raise ValueError(f"batch_size ({batch_size}) must be >= the micro-batch's {rows} sequences")
    if loss_type == "grpo":
        per_sequence = per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return per_sequence.sum() / max(total_rows, 1)
    if loss_type == "bnpo":
        return masked_sum / mask.sum().clamp(min=1.0) * (rows / max(total_rows, 1))
    if loss_type == "dr_grpo":
        if max_completion_length is None or max_completion_length <= 0:
            raise ValueError("loss_type 'dr_grpo' needs a positive max_completion_length")
        return masked_sum / (total_rows * max_completion_length)
    if loss_type == "dapo":
        if global_token_count is None:
            raise ValueError("loss_type 'dapo' needs global_token_count (active tokens of the whole generation batch)")
        return masked_sum * world_size / _token_count(global_token_count, per_token)
    raise ValueError(f"loss_type must be 'grpo', 'bnpo', 'dr_grpo' or 'dapo', got {loss_type!r}")


def _token_count(count: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(count, dtype=like.dtype, device=like.device).clamp(min=1.0)


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, clip_eps_low: float = 0.2,
                clip_eps_high: float | None = None, loss_type: LossType = "dapo",
                max_completion_length: int | None = None, ref_logp: Tensor | None = None, kl_coef: float = 0.0,
                kl_estimator: KLKind = "k3", entropy: Tensor | None = None, entropy_coef: float = 0.0,
                entropy_norm: EntropyNorm = "token_mean", global_token_count: float | Tensor | None = None,
                world_size: int = 1, batch_size: int | None = None,
                importance_sampling_level: ImportanceSamplingLevel = "token", delta: float | None = None,
                top_entropy_quantile: float = 1.0, entropy_threshold: float | Tensor | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped-surrogate GRPO loss for one micro-batch (docs/grpo.md, The policy loss).

    Per token, with A broadcast over the sequence and log r_t = logπ_θ − logπ_old:
      ρ = exp(log r_t)                              importance_sampling_level "token"
      ρ = exp(Σ_t m·log r_t / Σ_t m)                "sequence" (GSPO, TRL: one ratio per completion, clipped per
                                                    sequence; use loss_type "grpo" to reproduce GSPO, the others
                                                    weight sequences by their length)
      ρ' = min(ρ, δ) if ``delta`` is set, else ρ    (two-sided clip, INTELLECT-2 / TRL ``delta``: bounds the
                                                    ratio of negative-advantage tokens too; needs δ > 1 + ε_high)
      l_pg = −min(ρ'·A, clip(ρ, 1−ε_low, 1+ε_high)·A) · e,   e = 1 on tokens with H ≥ the top-entropy threshold
                                                    (TRL ``top_entropy_quantile``), else 0; e = 1 when the
                                                    quantile is 1
      l = agg(l_pg + β·KL(π_θ‖π_ref)) − c_H·H̄
    ``agg`` is the ``loss_type`` reduction (:func:`_aggregate`, module docstring); the normaliser keeps counting
    every active token when the entropy mask drops some of them from l_pg (TRL). The entropy bonus H̄ is
      "token_mean": Σ m·H · P / N_tok over the generation batch (TRL's coef·Σ m·H / Σ m for every loss type;
                    exact over micro-batches and ranks). Without ``global_token_count`` N_tok/P is this
                    micro-batch's Σ m and the term is weighted by its share b/B of the sequences (TRL's ÷GAS).
      "loss_type":  agg(H), the loss type's own normaliser (verl). Under dr_grpo the effective coefficient is
                    then c_H · mean length / L_max.
    ``clip_eps_high=None`` means ε_high = ε_low. The top-entropy threshold is ``entropy_threshold`` when given
    (the loop passes one computed over every rank's tokens), else :func:`high_entropy_threshold` over this
    micro-batch's active tokens.

    Masked positions never influence the loss or its gradient (their log-ratios and KL differences are zeroed
    before exp, so padding garbage cannot produce inf·0 = NaN).

    Returns ``(loss, stats)``; stats are detached per-micro-batch *sums* over active tokens, so the caller can
    reduce them exactly across micro-batches and ranks (metric = Σ sum / Σ token_count):
      token_count, seq_count, pg_loss_sum (surrogate term only), pg_token_count (tokens in the surrogate after
      the top-entropy mask),
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
    if entropy_norm not in ("token_mean", "loss_type"):
        raise ValueError(f"entropy_norm must be 'token_mean' or 'loss_type', got {entropy_norm!r}")
    if importance_sampling_level not in ("token", "sequence"):
        raise ValueError(f"importance_sampling_level must be 'token' or 'sequence', got {importance_sampling_level!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    if delta is not None and not delta > 1.0 + eps_high:
        raise ValueError(f"delta must be > 1 + clip_eps_high = {1.0 + eps_high}, got {delta}")
    if not 0.0 < top_entropy_quantile <= 1.0:
        raise ValueError(f"top_entropy_quantile must be in (0, 1], got {top_entropy_quantile}")
    masking_entropy = top_entropy_quantile < 1.0 or entropy_threshold is not None
    if masking_entropy and entropy is None:
        raise ValueError("top_entropy_quantile < 1 needs entropy")

    active = mask.bool()
    weight = active.to(logp.dtype)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    adv = advantages.to(logp.dtype).unsqueeze(1)

    log_ratio = torch.where(active, logp - old_logp, zero)
    if importance_sampling_level == "sequence":
        log_ratio = (log_ratio.sum(dim=1, keepdim=True) / weight.sum(dim=1, keepdim=True).clamp(min=1.0)
                     ).expand_as(logp)
    ratio = torch.exp(log_ratio)
    unclipped = ratio if delta is None else ratio.clamp(max=delta)
    surrogate = torch.minimum(unclipped * adv, ratio.clamp(1.0 - clip_eps_low, 1.0 + eps_high) * adv)
    pg_active = active
    if masking_entropy:
        assert entropy is not None
        threshold = (high_entropy_threshold(entropy, mask, top_entropy_quantile) if entropy_threshold is None
                     else torch.as_tensor(entropy_threshold, dtype=entropy.dtype, device=entropy.device))
        pg_active = active & (entropy.detach() >= threshold)
    pg_per_token = torch.where(pg_active, -surrogate, zero)
    per_token = pg_per_token

    stats: dict[str, Tensor] = {}
    if ref_logp is not None:
        safe_logp, safe_ref = torch.where(active, logp, zero), torch.where(active, ref_logp, zero)
        kl = torch.where(active, kl_estimate(safe_logp, safe_ref, kl_estimator), zero)
        stats["kl_sum"] = kl.detach().sum()
        if kl_coef != 0.0:
            per_token = per_token + kl_coef * kl

    def aggregate(values: Tensor) -> Tensor:
        return _aggregate(values, weight, loss_type, max_completion_length, global_token_count, world_size,
                          batch_size)

    loss = aggregate(per_token)
    if entropy is not None:
        masked_entropy = torch.where(active, entropy, zero)
        stats["entropy_sum"] = masked_entropy.detach().sum()
        if entropy_coef != 0.0:
            if entropy_norm == "loss_type":
                bonus = aggregate(masked_entropy)
            elif global_token_count is not None:
                bonus = masked_entropy.sum() * world_size / _token_count(global_token_count, masked_entropy)
            else:
                share = logp.shape[0] / (logp.shape[0] if batch_size is None else batch_size)
                bonus = masked_entropy.sum() / weight.sum().clamp(min=1.0) * share
            loss = loss - entropy_coef * bonus

    with torch.no_grad():
        low = (ratio < 1.0 - clip_eps_low) & (adv < 0) & active
        high = (ratio > 1.0 + eps_high) & (adv > 0) & active
        stats.update(
            token_count=weight.sum(),
            seq_count=torch.tensor(float(logp.shape[0]), dtype=logp.dtype, device=logp.device),
            pg_loss_sum=pg_per_token.detach().sum(),
            pg_token_count=pg_active.to(logp.dtype).sum(),
            clip_low_sum=low.to(logp.dtype).sum(),
            clip_high_sum=high.to(logp.dtype).sum(),
            clip_region_sum=(low | high).to(logp.dtype).sum(),
        )
    return loss, stats

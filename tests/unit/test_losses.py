"""Hand-computed oracles for aegir.rl.losses (docs/grpo.md, The policy loss), and the invariance proofs: the
"dapo" gradient does not depend on micro-batching, gradient accumulation or the number of DDP ranks, and no loss
type weights the sequences of an uneven last micro-batch differently."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aegir.rl.losses import high_entropy_threshold, kl_estimate, mask_truncated, policy_loss, soft_overlong_penalty

F64 = torch.float64

# 2×3 example. Ratios ρ (old_logp = 0, so logp = log ρ), advantages A = [+1, −1], ε_low = ε_high = 0.2,
# mask [[1,1,1],[1,1,0]]. Per-token loss −min(ρA, clip(ρ, 0.8, 1.2)A):
#   seq 0 (A=+1): ρ 1.0 -> −1.0 | ρ 1.1 -> −1.1 | ρ 1.5 -> −min(1.5, 1.2) = −1.2 (clipped high)
#   seq 1 (A=−1): ρ 0.9 -> +0.9 | ρ 0.5 -> −min(−0.5, −0.8) = +0.8 (clipped low) | ρ 0.1 masked out
# Σ m·l = −3.3 + 1.7 = −1.6 over 5 active tokens.
RATIOS = torch.tensor([[1.0, 1.1, 1.5], [0.9, 0.5, 0.1]], dtype=F64)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=F64)
ADV = torch.tensor([1.0, -1.0], dtype=F64)


def _example_loss(loss_type: str, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logp = RATIOS.log()
    return policy_loss(logp, torch.zeros_like(logp), ADV, MASK, clip_eps_low=0.2, clip_eps_high=0.2,
                       loss_type=loss_type, **kwargs)


@pytest.mark.parametrize(("loss_type", "kwargs", "expected"), [
    ("grpo", {}, -0.125),  # seq means −3.3/3 = −1.1 and 1.7/2 = 0.85; mean over 2 sequences
    ("bnpo", {}, -0.32),  # −1.6 / 5 tokens
    ("dr_grpo", {"max_completion_length": 4}, -0.2),  # −1.6 / (B=2 · L_max=4)
    ("dapo", {"global_token_count": 10}, -0.16),  # −1.6 / 10 global tokens
    ("dapo", {"global_token_count": 10, "world_size": 2}, -0.32),  # −1.6 / (10 / 2)
])
def test_loss_type_normalisation(loss_type: str, kwargs: dict, expected: float) -> None:
    loss, _ = _example_loss(loss_type, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_clip_stats_count_active_tokens_only() -> None:
    _, stats = _example_loss("bnpo")
    # low: ρ=0.5 < 0.8 with A<0 (ρ=0.1 is masked); high: ρ=1.5 > 1.2 with A>0.
    assert {k: stats[k].item() for k in ("token_count", "seq_count", "clip_low_sum", "clip_high_sum",
                                         "clip_region_sum")} == {"token_count": 5.0, "seq_count": 2.0,
                                                                 "clip_low_sum": 1.0, "clip_high_sum": 1.0,
                                                                 "clip_region_sum": 2.0}
    assert stats["pg_loss_sum"].item() == pytest.approx(-1.6, abs=1e-12)
    assert "kl_sum" not in stats and "entropy_sum" not in stats


def test_clipped_tokens_get_zero_gradient() -> None:
    # Six one-token sequences, bnpo (mean over 6 tokens), ε_low = 0.2, ε_high = 0.28 (clip-higher).
    # d loss/d logp = −ρA/6 where the unclipped branch is active, 0 where the clipped constant is selected.
    ratios = torch.tensor([1.5, 1.25, 0.5, 0.5, 1.5, 0.9], dtype=F64)
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0], dtype=F64)
    logp = ratios.log().unsqueeze(1).requires_grad_()
    loss, stats = policy_loss(logp, torch.zeros_like(logp), adv, torch.ones_like(logp), clip_eps_low=0.2,
                              clip_eps_high=0.28, loss_type="bnpo")
    loss.backward()
    expected = torch.tensor([0.0,  # ρ>1.28, A>0: clipped
                             -1.25 / 6,  # 1.25 < 1.28: inside thanks to ε_high
                             -0.5 / 6,  # ρ<0.8 but A>0: min picks ρA, not clipped
                             0.0,  # ρ<0.8, A<0: clipped
                             1.5 / 6,  # ρ>1.28 but A<0: min picks ρA, not clipped
                             0.9 / 6], dtype=F64)  # inside the trust region
    torch.testing.assert_close(logp.grad.squeeze(1), expected, rtol=0, atol=1e-12)
    assert (stats["clip_low_sum"].item(), stats["clip_high_sum"].item(), stats["clip_region_sum"].item()) == (1, 1, 2)


LN2 = math.log(2.0)


def test_kl_estimators_hand_values() -> None:
    # π_θ = 0.5, π_ref = 0.25: d = log π_ref − log π_θ = −ln 2.
    logp, ref = torch.tensor([math.log(0.5)], dtype=F64), torch.tensor([math.log(0.25)], dtype=F64)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(LN2)  # 0.6931472
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * LN2 ** 2)  # 0.2402265
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 + LN2 - 1.0)  # 0.1931472
    assert kl_estimate(logp, logp, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k4")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-30, 0), st.floats(-30, 0)), min_size=1, max_size=16),
       st.sampled_from([torch.float32, torch.float64]))
def test_k3_is_non_negative(pairs: list[tuple[float, float]], dtype: torch.dtype) -> None:
    logp = torch.tensor([p for p, _ in pairs], dtype=dtype)
    ref = torch.tensor([r for _, r in pairs], dtype=dtype)
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, ref, "k2") >= 0).all()


def test_kl_and_entropy_terms_in_loss() -> None:
    # On-policy (ρ = 1) with A = 0: only β·k3 − c_H·H remains. k3 = 0.5 + ln 2 − 1 per active token, H as given.
    logp = torch.full((2, 3), math.log(0.5), dtype=F64)
    ref = torch.full((2, 3), math.log(0.25), dtype=F64)
    entropy = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=F64)
    loss, stats = policy_loss(logp, logp, torch.zeros(2, dtype=F64), MASK, loss_type="bnpo", ref_logp=ref,
                              kl_coef=0.1, entropy=entropy, entropy_coef=0.01)
    k3 = 0.5 + LN2 - 1.0
    # bnpo mean over 5 tokens: 0.1·k3 − 0.01·(1+2+3+4+5)/5 = 0.0193147 − 0.03
    assert loss.item() == pytest.approx(0.1 * k3 - 0.03, abs=1e-12)
    assert stats["kl_sum"].item() == pytest.approx(5 * k3)
    assert stats["entropy_sum"].item() == pytest.approx(15.0)


def test_padding_garbage_does_not_leak() -> None:
    logp = RATIOS.log().clone()
    logp[1, 2] = -math.inf  # e.g. a log-prob of a padded position
    logp.requires_grad_()
    ref = torch.zeros_like(logp)
    ref[1, 2] = math.nan
    loss, stats = policy_loss(logp, torch.zeros_like(logp), ADV, MASK, loss_type="bnpo", ref_logp=ref,
                              kl_coef=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all() and logp.grad[1, 2] == 0
    assert torch.isfinite(stats["kl_sum"])


def test_mask_truncated() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    out = mask_truncated(mask, torch.tensor([False, True, False]))
    assert out.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 0]] and out.dtype == mask.dtype


def test_soft_overlong_penalty() -> None:
    # L_max = 10, L_cache = 4: free up to 6, then (6 − |y|)/4, −1 beyond 10.
    lengths = torch.tensor([3, 6, 7, 8, 10, 11])
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 4),
                               torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0]))
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 0), torch.tensor([0.0, 0, 0, 0, 0, -1.0]))


def test_required_arguments_raise() -> None:
    with pytest.raises(ValueError, match="global_token_count"):
        _example_loss("dapo")
    with pytest.raises(ValueError, match="max_completion_length"):
        _example_loss("dr_grpo")
    with pytest.raises(ValueError, match="ref_logp"):
        _example_loss("bnpo", kl_coef=0.1)
    with pytest.raises(ValueError, match="loss_type"):
        _example_loss("cispo")


# ---------------------------------------------------------------------------------------------------------------
# Entropy bonus normalisation. On-policy (ρ = 1) with A = 0, no KL: the loss is the entropy term alone.
# H on the 5 active tokens of MASK: 1, 2, 3 | 4, 5 (6 is masked): Σ m·H = 15, per-sequence means 2 and 4.5.
ENTROPY = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=F64)


def _entropy_only(loss_type: str, **kwargs) -> float:
    logp = torch.full((2, 3), math.log(0.5), dtype=F64)
    loss, _ = policy_loss(logp, logp, torch.zeros(2, dtype=F64), MASK, loss_type=loss_type, entropy=ENTROPY,
                          entropy_coef=0.01, **kwargs)
    return loss.item()


@pytest.mark.parametrize(("loss_type", "kwargs"), [
    ("grpo", {}), ("bnpo", {}), ("dr_grpo", {"max_completion_length": 4}), ("dapo", {"global_token_count": 5}),
])
def test_entropy_bonus_defaults_to_the_token_mean_for_every_loss_type(loss_type: str, kwargs: dict) -> None:
    # TRL: −c_H · Σ m·H / Σ m = −0.01 · 15/5 = −0.03 whatever the loss type (verl's way gave dr_grpo −0.01875).
    assert _entropy_only(loss_type, **kwargs) == pytest.approx(-0.03, abs=1e-12)


@pytest.mark.parametrize(("loss_type", "kwargs", "expected"), [
    ("grpo", {}, -0.0325),  # −0.01 · (2 + 4.5)/2
    ("bnpo", {}, -0.03),  # −0.01 · 15/5
    ("dr_grpo", {"max_completion_length": 4}, -0.01875),  # −0.01 · 15/(2·4): c_H shrunk by mean length / L_max
    ("dapo", {"global_token_count": 10}, -0.015),  # −0.01 · 15/10
])
def test_entropy_norm_loss_type_uses_the_loss_types_normaliser(loss_type: str, kwargs: dict,
                                                                expected: float) -> None:
    assert _entropy_only(loss_type, entropy_norm="loss_type", **kwargs) == pytest.approx(expected, abs=1e-12)


def test_token_mean_entropy_is_over_the_generation_batch() -> None:
    # With the batch's token count (here 10, P = 2): −0.01 · 15 · 2/10 = −0.03 under any loss type. Without it,
    # the micro-batch's own token mean weighted by its share of the batch's sequences: −0.01 · 3 · 2/8 = −0.0075.
    assert _entropy_only("dr_grpo", max_completion_length=4, global_token_count=10,
                         world_size=2) == pytest.approx(-0.03, abs=1e-12)
    assert _entropy_only("grpo", batch_size=8) == pytest.approx(-0.0075, abs=1e-12)
    with pytest.raises(ValueError, match="entropy_norm"):
        _entropy_only("grpo", entropy_norm="sequence")


# ---------------------------------------------------------------------------------------------------------------
# GSPO: one ratio per sequence, ρ_i = exp(Σ_t m·log r_t / Σ_t m), clipped per sequence (RATIOS, ε = 0.2):
#   seq 0 (A=+1): ρ = (1.0·1.1·1.5)^(1/3) = 1.65^(1/3) = 1.1816658 < 1.2 -> l = −1.1816658 on each token
#   seq 1 (A=−1): ρ = (0.9·0.5)^(1/2) = 0.6708204 < 0.8 -> clipped, l = +0.8 on both active tokens
# loss_type grpo: (−1.1816658 + 0.8)/2 = −0.1908329. Gradient: seq 0's loss is −ρ_0/2, and
# dρ_0/dlogp_t = ρ_0/3, so −ρ_0/6 = −0.1969443 on each of its tokens; seq 1 is clipped: 0.
def test_gspo_sequence_level_ratio() -> None:
    logp = RATIOS.log().requires_grad_()
    loss, stats = policy_loss(logp, torch.zeros_like(logp), ADV, MASK, clip_eps_low=0.2, clip_eps_high=0.2,
                              loss_type="grpo", importance_sampling_level="sequence")
    assert loss.item() == pytest.approx(-0.1908328752337506, abs=1e-12)
    loss.backward()
    g = -0.19694429174458353
    torch.testing.assert_close(logp.grad, torch.tensor([[g, g, g], [0.0, 0.0, 0.0]], dtype=F64), rtol=0, atol=1e-12)
    assert stats["clip_low_sum"].item() == 2.0 and stats["clip_high_sum"].item() == 0.0
    token_level, _ = _example_loss("grpo")
    assert token_level.item() == pytest.approx(-0.125, abs=1e-12)  # the token-level default is unchanged
    with pytest.raises(ValueError, match="importance_sampling_level"):
        _example_loss("grpo", importance_sampling_level="batch")


# ---------------------------------------------------------------------------------------------------------------
# Two-sided clip (δ = 2, ε = 0.2), four one-token sequences, bnpo (÷4):
#   ρ=3,   A=−1: −min(min(3,2)·(−1), 1.2·(−1)) = 2   (without δ: 3), gradient 0 (the capped ratio is constant)
#   ρ=3,   A=+1: −min(2, 1.2) = −1.2                  (clipped as without δ), gradient 0
#   ρ=1.1, A=−1: 1.1, gradient −ρA/4 = 0.275
#   ρ=0.5, A=−1: −min(−0.5, −0.8) = 0.8 (clipped low), gradient 0
# loss = (2 − 1.2 + 1.1 + 0.8)/4 = 0.675; without δ (3 − 1.2 + 1.1 + 0.8)/4 = 0.925 and token 0's gradient 0.75.
def test_two_sided_clip_bounds_negative_advantage_ratios() -> None:
    ratios = torch.tensor([[3.0], [3.0], [1.1], [0.5]], dtype=F64)
    adv = torch.tensor([-1.0, 1.0, -1.0, -1.0], dtype=F64)

    def run(delta: float | None) -> tuple[float, torch.Tensor]:
        logp = ratios.log().requires_grad_()
        loss, _ = policy_loss(logp, torch.zeros_like(logp), adv, torch.ones_like(logp), clip_eps_low=0.2,
                              clip_eps_high=0.2, loss_type="bnpo", delta=delta)
        loss.backward()
        return loss.item(), logp.grad.squeeze(1)

    loss, grad = run(2.0)
    assert loss == pytest.approx(0.675, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 0.275, 0.0], dtype=F64), rtol=0, atol=1e-12)
    loss, grad = run(None)
    assert loss == pytest.approx(0.925, abs=1e-12) and grad[0].item() == pytest.approx(0.75, abs=1e-12)
    with pytest.raises(ValueError, match="delta"):
        run(1.1)  # must exceed 1 + ε_high, or it would clip positive advantages below the trust region


# ---------------------------------------------------------------------------------------------------------------
# Top-entropy masking on the 2×3 example: active entropies 1, 2, 3, 4, 5. Quantile 0.4 keeps H ≥ the
# 0.6-quantile = 3 + 0.4·(4 − 3) = 3.4 (linear interpolation at position 0.6·4 = 2.4): seq 1's two tokens
# (l = 0.9, 0.8). bnpo still divides by all 5 active tokens: 1.7/5 = 0.34 (unmasked −1.6/5 = −0.32).
def test_top_entropy_quantile_masks_the_policy_term() -> None:
    assert high_entropy_threshold(ENTROPY, MASK, 0.4).item() == pytest.approx(3.4, abs=1e-12)
    assert high_entropy_threshold(ENTROPY, MASK, 1.0).item() == 1.0
    loss, stats = _example_loss("bnpo", entropy=ENTROPY, top_entropy_quantile=0.4)
    assert loss.item() == pytest.approx(0.34, abs=1e-12)
    assert stats["pg_token_count"].item() == 2.0 and stats["token_count"].item() == 5.0
    # An explicit threshold (the loop's, gathered over ranks) wins: H ≥ 2.5 keeps 3 | 4, 5 -> (−1.2 + 1.7)/5.
    loss, _ = _example_loss("bnpo", entropy=ENTROPY, top_entropy_quantile=0.4, entropy_threshold=2.5)
    assert loss.item() == pytest.approx(0.1, abs=1e-12)
    # The KL term is not masked: β·k3 on all 5 tokens is added on top of the masked surrogate.
    ref = RATIOS.log() - LN2
    loss, _ = _example_loss("bnpo", entropy=ENTROPY, top_entropy_quantile=0.4, ref_logp=ref, kl_coef=0.1)
    assert loss.item() == pytest.approx(0.34 + 0.1 * (0.5 + LN2 - 1.0), abs=1e-12)
    with pytest.raises(ValueError, match="top_entropy_quantile"):
        _example_loss("bnpo", entropy=ENTROPY, top_entropy_quantile=0.0)
    with pytest.raises(ValueError, match="needs entropy"):
        _example_loss("bnpo", top_entropy_quantile=0.5)


# ---------------------------------------------------------------------------------------------------------------
# DAPO invariance: a tiny shared-parameter policy (logits = x·W) over 6 sequences of unequal lengths.

LENGTHS = [5, 1, 3, 4, 2, 5]  # 20 active tokens
MICRO_BATCHES = [slice(0, 1), slice(1, 3), slice(3, 6)]  # 5, 4 and 11 tokens
RANKS = [[slice(0, 1), slice(1, 3)], [slice(3, 5), slice(5, 6)]]  # 9 and 11 tokens, 2 accumulation steps each


def _policy_batch(lengths: list[int] = LENGTHS) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    b, t, d, v = len(lengths), max(lengths), 4, 7
    w = torch.randn(d, v, generator=gen, dtype=F64)
    x = torch.randn(b, t, d, generator=gen, dtype=F64)
    tokens = torch.randint(0, v, (b, t), generator=gen)
    mask = (torch.arange(t) < torch.tensor(lengths).unsqueeze(1)).to(F64)
    logp0 = torch.log_softmax(x @ w, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    old = logp0 + 0.3 * torch.randn(b, t, generator=gen, dtype=F64)  # ratios spread over the clip boundaries
    ref = logp0 + 0.3 * torch.randn(b, t, generator=gen, dtype=F64)
    adv = torch.randn(b, generator=gen, dtype=F64)
    return {"w": w, "x": x, "tokens": tokens, "mask": mask, "old": old, "ref": ref, "adv": adv}


def _backward(w: torch.Tensor, data: dict[str, torch.Tensor], rows: slice, loss_type: str,
              scale: float = 1.0, **kwargs) -> None:
    """One micro-batch forward + backward on replica `w` (gradients accumulate in w.grad)."""
    logits = data["x"][rows] @ w
    logprobs = torch.log_softmax(logits, -1)
    logp = logprobs.gather(-1, data["tokens"][rows].unsqueeze(-1)).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    loss, _ = policy_loss(logp, data["old"][rows], data["adv"][rows], data["mask"][rows], clip_eps_low=0.2,
                          clip_eps_high=0.28, loss_type=loss_type, ref_logp=data["ref"][rows], kl_coef=0.05,
                          entropy=entropy, entropy_coef=0.01, **kwargs)
    (loss * scale).backward()


def _replica(data: dict[str, torch.Tensor]) -> torch.Tensor:
    return data["w"].clone().requires_grad_()


def test_dapo_gradient_invariant_to_microbatching_accumulation_and_ranks() -> None:
    data = _policy_batch()
    n_tok = data["mask"].sum().item()
    assert n_tok == 20

    full = _replica(data)
    _backward(full, data, slice(0, 6), "dapo", global_token_count=n_tok)

    accumulated = _replica(data)  # 3 unequal micro-batches, losses summed (no ÷GAS)
    for rows in MICRO_BATCHES:
        _backward(accumulated, data, rows, "dapo", global_token_count=n_tok)
    torch.testing.assert_close(accumulated.grad, full.grad, rtol=0, atol=1e-6)

    # 2 simulated DDP ranks, each accumulating over its own micro-batches with the global token count and
    # world_size=2; DDP then averages the replicas' gradients.
    rank_grads = []
    for rank_rows in RANKS:
        replica = _replica(data)
        for rows in rank_rows:
            _backward(replica, data, rows, "dapo", global_token_count=n_tok, world_size=2)
        rank_grads.append(replica.grad)
    torch.testing.assert_close(torch.stack(rank_grads).mean(0), full.grad, rtol=0, atol=1e-6)

    # Without the world-size compensation the DDP average would be 1/P of the true gradient.
    uncompensated = []
    for rank_rows in RANKS:
        replica = _replica(data)
        for rows in rank_rows:
            _backward(replica, data, rows, "dapo", global_token_count=n_tok, world_size=1)
        uncompensated.append(replica.grad)
    torch.testing.assert_close(torch.stack(uncompensated).mean(0), full.grad / 2, rtol=0, atol=1e-6)


def test_bnpo_is_not_invariant_to_microbatching() -> None:
    # bnpo normalises by the micro-batch's own token count (TRL: then ÷GAS), so micro-batches with few tokens
    # are over-weighted per token: the accumulated gradient is not the full-batch token mean. This is why dapo
    # (a single global normaliser) exists.
    data = _policy_batch()
    full = _replica(data)
    _backward(full, data, slice(0, 6), "bnpo")
    accumulated = _replica(data)
    for rows in MICRO_BATCHES:
        _backward(accumulated, data, rows, "bnpo", scale=1.0 / len(MICRO_BATCHES))
    assert (accumulated.grad - full.grad).abs().max().item() > 1e-3


@pytest.mark.parametrize("entropy_norm", ["token_mean", "loss_type"])
@pytest.mark.parametrize(("loss_type", "lengths"), [
    ("grpo", LENGTHS), ("dr_grpo", LENGTHS), ("dapo", LENGTHS),
    ("bnpo", [3] * 6),  # bnpo is a per-micro-batch token mean: split-invariant only when lengths are equal
])
def test_uneven_micro_batches_weigh_every_sequence_equally(loss_type: str, lengths: list[int],
                                                           entropy_norm: str) -> None:
    """Micro-batches of 1, 2 and 3 sequences, losses summed with the batch's normalisers (batch_size = 6 and
    the batch's token count): the gradient of the full batch, for every loss type and both entropy norms."""
    data = _policy_batch(lengths)
    n_tok = data["mask"].sum().item()
    common = {"max_completion_length": max(lengths), "global_token_count": n_tok, "entropy_norm": entropy_norm}
    full = _replica(data)
    _backward(full, data, slice(0, 6), loss_type, batch_size=6, **common)
    accumulated = _replica(data)
    for rows in MICRO_BATCHES:
        _backward(accumulated, data, rows, loss_type, batch_size=6, **common)
    torch.testing.assert_close(accumulated.grad, full.grad, rtol=0, atol=1e-12)
    if loss_type in ("grpo", "dr_grpo"):  # dividing each chunk by the number of chunks instead is wrong
        divided = _replica(data)
        for rows in MICRO_BATCHES:
            _backward(divided, data, rows, loss_type, scale=1.0 / len(MICRO_BATCHES), **common)
        assert (divided.grad - full.grad).abs().max().item() > 1e-3

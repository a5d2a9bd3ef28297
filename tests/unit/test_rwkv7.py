"""RWKV-7 kernels and layers: chunked == recurrent (values, states, gradients), carried state, init, dispatch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from aegir.models.rwkv7 import (
    _lora,
    _wkv_step,
    Block,
    RWKV7Stack,
    RWKV7State,
    TimeMix,
    fla_available,
    get_wkv_impl,
    lora_ranks,
    set_wkv_impl,
    use_wkv_impl,
    wkv,
    wkv_step_fused,
    wkv_chunked,
    wkv_recurrent,
)

LOG_DECAY_MIN = -math.exp(-0.5)  # -0.60653...


def random_wkv_inputs(
    batch: int, seq_len: int, heads: int, n: int, seed: int = 0, device: str = "cpu"
) -> tuple[torch.Tensor, ...]:
    """Inputs in the ranges the model produces: log decay in (-0.6065, 0), unit kk per head, a_icl in (0, 1)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    shape = (batch, seq_len, heads, n)
    r, k, v = randn(*shape), randn(*shape), randn(*shape)
    w_log = LOG_DECAY_MIN * torch.rand(*shape, generator=gen)
    kk = F.normalize(randn(*shape), dim=-1)
    icl = torch.rand(*shape, generator=gen)
    state = randn(batch, heads, n, n)
    return tuple(t.to(device) for t in (r, w_log, k, v, -kk, kk * icl, state))


def max_rel_diff(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1.0)).item()


def perturb_(module: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> None:
    """Add noise to every parameter: zero-init output/value layers would otherwise make each block an identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


# ----------------------------------------------------------------------------------------------------------------------
# WKV kernels
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len,chunk_size", [(1, 16), (7, 16), (16, 16), (45, 16), (50, 5), (33, 64)])
def test_chunked_matches_recurrent(seq_len: int, chunk_size: int) -> None:
    r, w_log, k, v, a, b, state = random_wkv_inputs(2, seq_len, 3, 16, seed=seq_len)
    y_ref, s_ref = wkv_recurrent(r, w_log, k, v, a, b, state)
    y, s = wkv_chunked(r, w_log, k, v, a, b, state, chunk_size=chunk_size)
    assert y.shape == y_ref.shape == r.shape and s.shape == state.shape
    assert max_rel_diff(y, y_ref) < 1e-5
    assert max_rel_diff(s, s_ref) < 1e-5


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 40),
    heads=st.integers(1, 2),
    n=st.sampled_from([4, 8, 32]),
    chunk_size=st.sampled_from([1, 3, 8, 16]),
    seed=st.integers(0, 10_000),
)
def test_chunked_matches_recurrent_property(
    batch: int, seq_len: int, heads: int, n: int, chunk_size: int, seed: int
) -> None:
    r, w_log, k, v, a, b, state = random_wkv_inputs(batch, seq_len, heads, n, seed=seed)
    y_ref, s_ref = wkv_recurrent(r, w_log, k, v, a, b, state)
    y, s = wkv_chunked(r, w_log, k, v, a, b, state, chunk_size=chunk_size)
    assert max_rel_diff(y, y_ref) < 1e-5
    assert max_rel_diff(s, s_ref) < 1e-5


def test_chunked_handles_strong_decay_without_overflow() -> None:
    """Decays far below the model's range shrink the chunk (down to 1) so the factorised e^{-g} never overflows."""
    r, w_log, k, v, a, b, state = random_wkv_inputs(1, 40, 2, 8, seed=3)
    w_log = w_log * 200.0  # log decay down to -121: e^{-sum w} would overflow fp32 over a whole chunk
    y_ref, s_ref = wkv_recurrent(r, w_log, k, v, a, b, state)
    y, s = wkv_chunked(r, w_log, k, v, a, b, state)
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    assert max_rel_diff(y, y_ref) < 1e-5 and max_rel_diff(s, s_ref) < 1e-5


@pytest.mark.parametrize("decay_scale,chunk_size", [(1.0, 64), (5.0, 16), (20.0, 32)])
def test_chunked_factorised_decay_range(decay_scale: float, chunk_size: int) -> None:
    """Model decays at their steepest over a 64-step chunk, and steeper ones that make the chunk shrink, stay exact."""
    r, w_log, k, v, a, b, state = random_wkv_inputs(1, 70, 2, 16, seed=4)
    w_log = torch.full_like(w_log, LOG_DECAY_MIN * decay_scale)
    w_log[:, ::3] *= torch.rand(w_log[:, ::3].shape, generator=torch.Generator().manual_seed(0))
    leaves = [t.clone().requires_grad_() for t in (r, w_log, k, v, a, b, state)]
    y_ref, s_ref = wkv_recurrent(*leaves)
    (y_ref.square().sum() + s_ref.sum()).backward()
    grads_ref = [leaf.grad for leaf in leaves]
    leaves = [t.clone().requires_grad_() for t in (r, w_log, k, v, a, b, state)]
    y, s = wkv_chunked(*leaves, chunk_size=chunk_size)
    (y.square().sum() + s.sum()).backward()
    assert max_rel_diff(y, y_ref) < 1e-5 and max_rel_diff(s, s_ref) < 1e-5
    for leaf, g_ref in zip(leaves, grads_ref):
        assert torch.isfinite(leaf.grad).all() and max_rel_diff(leaf.grad, g_ref) < 1e-4


def test_chunked_gradients_match_recurrent() -> None:
    inputs = random_wkv_inputs(2, 37, 2, 8, seed=1)
    grads = []
    for fn in (wkv_recurrent, wkv_chunked):
        leaves = [t.clone().requires_grad_() for t in inputs]
        y, s = fn(*leaves)
        (y.square().sum() + (s * torch.linspace(-1, 1, s.numel()).view_as(s)).sum()).backward()
        grads.append([leaf.grad for leaf in leaves])
    for g_ref, g in zip(*grads):
        assert g is not None and torch.isfinite(g).all()
        assert max_rel_diff(g, g_ref) < 1e-4


def test_chunked_carried_state_equals_whole_sequence() -> None:
    r, w_log, k, v, a, b, state = random_wkv_inputs(2, 53, 2, 16, seed=2)
    y_all, s_all = wkv_chunked(r, w_log, k, v, a, b, state)
    cut = 21
    first = [t[:, :cut] for t in (r, w_log, k, v, a, b)]
    second = [t[:, cut:] for t in (r, w_log, k, v, a, b)]
    y1, s1 = wkv_chunked(*first, state)
    y2, s2 = wkv_chunked(*second, s1)
    assert max_rel_diff(torch.cat([y1, y2], dim=1), y_all) < 1e-5
    assert max_rel_diff(s2, s_all) < 1e-5


def test_wkv_keeps_input_dtype_and_fp32_state() -> None:
    r, w_log, k, v, a, b, state = (t.to(torch.bfloat16) for t in random_wkv_inputs(1, 20, 1, 8))
    for fn in (wkv_recurrent, wkv_chunked):
        y, s = fn(r, w_log, k, v, a, b, state)
        assert y.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_wkv_zero_state_default() -> None:
    r, w_log, k, v, a, b, _ = random_wkv_inputs(1, 9, 2, 8)
    zero = torch.zeros(1, 2, 8, 8)
    y_none, s_none = wkv_chunked(r, w_log, k, v, a, b)
    y_zero, s_zero = wkv_chunked(r, w_log, k, v, a, b, zero)
    assert torch.equal(y_none, y_zero) and torch.equal(s_none, s_zero)


def test_wkv_dispatch_switch() -> None:
    r, w_log, k, v, a, b, state = random_wkv_inputs(1, 20, 1, 8)
    assert get_wkv_impl() == "auto"
    y_auto, _ = wkv(r, w_log, k, v, a, b, state)
    assert torch.equal(y_auto, wkv_chunked(r, w_log, k, v, a, b, state)[0])  # CPU, T > 1 -> chunked
    with use_wkv_impl("recurrent"):
        y_rec, _ = wkv(r, w_log, k, v, a, b, state)
    assert torch.equal(y_rec, wkv_recurrent(r, w_log, k, v, a, b, state)[0])
    assert get_wkv_impl() == "auto"
    with pytest.raises(ValueError, match="unknown WKV"):
        set_wkv_impl("cuda-magic")


@pytest.mark.skipif(not (torch.cuda.is_available() and fla_available()), reason="needs CUDA and fla")
def test_torch_chunked_matches_fla() -> None:
    r, w_log, k, v, a, b, state = random_wkv_inputs(2, 100, 2, 64, seed=5, device="cuda")
    y_torch, s_torch = wkv_chunked(r, w_log, k, v, a, b, state)
    y_fla, s_fla = wkv(r, w_log, k, v, a, b, state, impl="fla")
    assert max_rel_diff(y_fla.float(), y_torch) < 1e-3
    assert max_rel_diff(s_fla, s_torch) < 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# Init
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "d_model,expected",
    [(128, (32, 32, 32, 64)), (192, (32, 32, 32, 64)), (256, (32, 32, 32, 64)), (384, (64, 64, 32, 96)),
     (1024, (64, 64, 64, 160))],
)
def test_lora_ranks_match_table(d_model: int, expected: tuple[int, int, int, int]) -> None:
    ranks = lora_ranks(d_model)
    assert (ranks["w"], ranks["a"], ranks["v"], ranks["g"]) == expected


def test_time_mix_init() -> None:
    c, n, n_layers = 128, 32, 4
    layer0, layer2 = TimeMix(c, n, 0, n_layers), TimeMix(c, n, 2, n_layers)
    assert layer2.w1.shape == (c, 32) and layer2.w2.shape == (32, c) and layer2.g1.shape == (c, 64)
    assert torch.count_nonzero(layer2.output.weight) == 0 and torch.count_nonzero(layer2.w1) == 0
    assert torch.allclose(layer2.w2 @ layer2.w2.T, 0.01 * torch.eye(32), atol=1e-5)  # orthogonal, gain 0.1
    assert torch.allclose(layer2.ln_x.weight, torch.full((c,), (3 / 4) ** 0.7))
    assert layer2.ln_x.eps == pytest.approx(64e-5) and layer2.ln_x.num_groups == c // n
    assert not hasattr(layer0, "v0") and layer2.v0.shape == (c,)  # layer 0 defines v_first, needs no residual LoRA
    assert layer2.r_k.shape == (c // n, n)
    assert layer2.receptance.weight.abs().max() <= 0.5 / math.sqrt(c)
    assert layer2.key.weight.abs().max() <= 0.05 / math.sqrt(c)


@pytest.mark.parametrize(("layer_id", "lead"), [(0, (2, 5)), (2, (2, 5)), (2, (3,))])
def test_lora_rates_match_the_loras_one_by_one(layer_id: int, lead: tuple[int, ...]) -> None:
    """The batched decay / in-context-rate / value-residual LoRAs equal `log_decay` and `_lora` applied one by one."""
    torch.manual_seed(0)
    att = TimeMix(64, 32, layer_id, 3)
    perturb_(att, scale=0.3)
    mixed = torch.randn(3, *lead, 64)
    w_log, icl, v_gate = att.lora_rates(mixed)
    assert (w_log - att.log_decay(mixed[0])).abs().max() < 1e-6
    assert (icl - torch.sigmoid(_lora(mixed[1], att.a1, att.a2, att.a0))).abs().max() < 1e-6
    if layer_id == 0:
        assert v_gate is None
    else:
        assert v_gate is not None
        assert (v_gate - torch.sigmoid(_lora(mixed[2], att.v1, att.v2, att.v0))).abs().max() < 1e-6


def test_decay_stays_in_range() -> None:
    att = TimeMix(128, 32, 1, 4)
    x = 10 * torch.randn(3, 7, 128)
    decay = torch.exp(att.log_decay(x))
    assert decay.min() > 0.545 and decay.max() < 1.0
    perturb_(att, scale=1.0)  # far from init the sigmoid still bounds it (reaching the ends only by fp32 rounding)
    log_decay = att.log_decay(x)
    assert log_decay.min() >= LOG_DECAY_MIN - 1e-6 and log_decay.max() <= 0.0


def test_block_layout_and_divisibility() -> None:
    assert Block(64, 32, 0, 2).ln0 is not None and Block(64, 32, 1, 2).ln0 is None
    with pytest.raises(ValueError, match="divisible"):
        RWKV7Stack(100, 2, head_size=64)
    with pytest.raises(ValueError, match="divisible"):
        TimeMix(96, 64, 0, 1)


# ----------------------------------------------------------------------------------------------------------------------
# Stack and state
# ----------------------------------------------------------------------------------------------------------------------


def make_stack(d_model: int = 64, n_layers: int = 3, head_size: int = 32) -> RWKV7Stack:
    torch.manual_seed(0)
    stack = RWKV7Stack(d_model, n_layers, head_size)
    perturb_(stack, scale=0.1)
    return stack


def test_stack_blocks_are_not_identity_after_perturbation() -> None:
    stack = make_stack()
    x = torch.randn(2, 10, 64)
    y, _ = stack(x)
    assert (y - stack.blocks[0].ln0(x)).abs().mean() > 0.05


def test_stack_forward_equals_stepping() -> None:
    stack = make_stack()
    x = torch.randn(2, 37, 64)
    y_all, s_all = stack(x)
    state = stack.initial_state(2)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = stack.step(x[:, t], state)
        ys.append(y_t)
    assert (torch.stack(ys, dim=1) - y_all).abs().max() < 1e-4
    for field in ("att_shift", "wkv", "ffn_shift"):
        assert (getattr(state, field) - getattr(s_all, field)).abs().max() < 1e-4


@pytest.mark.parametrize("with_out", [False, True])
def test_fused_wkv_step_matches_todays_step(with_out: bool) -> None:
    """The decoding step's elementwise WKV update equals the bmm form (`_wkv_step`, the oracle) within 1e-5."""
    r, w_log, k, v, a, b, state = random_wkv_inputs(3, 1, 2, 16, seed=7)
    args = (r[:, 0], torch.exp(w_log[:, 0]), k[:, 0], v[:, 0], a[:, 0], b[:, 0])
    ref_state, ref_y = _wkv_step(state, *args)
    out = torch.full_like(state, float("nan")) if with_out else None
    new_state, y = wkv_step_fused(state, *args, out=out)
    assert max_rel_diff(new_state, ref_state) < 1e-5 and max_rel_diff(y, ref_y) < 1e-5
    assert out is None or new_state.data_ptr() == out.data_ptr()


@pytest.mark.usefixtures("one_thread")  # 3-row steps: one thread, not thread hand-offs per op
@pytest.mark.parametrize("grad", [False, True])
def test_fused_stack_step_matches_forward_on_one_token(grad: bool) -> None:
    """Parity of the fused decoding step with today's step, i.e. `forward` on T = 1 (the same math with a time axis),
    over 12 tokens from a shared state: outputs and all three states within 1e-5 (no_grad writes the stacked WKV
    state in place; with autograd on it takes the out-of-place path)."""
    stack = make_stack()
    x = torch.randn(3, 12, 64, generator=torch.Generator().manual_seed(1))
    fused = oracle = stack.initial_state(3)
    with torch.set_grad_enabled(grad):
        for t in range(x.shape[1]):
            y_fused, fused = stack.step(x[:, t], fused)
            y_oracle, oracle = stack(x[:, t : t + 1], oracle)
            assert (y_fused - y_oracle[:, 0]).abs().max() < 1e-5
    for field in ("att_shift", "wkv", "ffn_shift"):
        assert (getattr(fused, field) - getattr(oracle, field)).abs().max() < 1e-5
    assert fused.wkv.abs().max() > 0.1  # the state really moved


def test_stack_carried_state_equals_whole_sequence() -> None:
    stack = make_stack()
    x = torch.randn(2, 50, 64)
    y_all, s_all = stack(x)
    y1, s1 = stack(x[:, :19])
    y2, s2 = stack(x[:, 19:], s1)
    assert (torch.cat([y1, y2], dim=1) - y_all).abs().max() < 1e-4
    assert (s2.wkv - s_all.wkv).abs().max() < 1e-4


def test_stack_backward_reaches_every_parameter() -> None:
    stack = make_stack()
    y, _ = stack(torch.randn(2, 20, 64))
    y.square().mean().backward()
    missing = [name for name, p in stack.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_state_zeros_detach_where() -> None:
    state = RWKV7State.zeros(3, n_layers=2, d_model=64, head_size=32)
    assert state.att_shift.shape == (2, 3, 64) and state.ffn_shift.shape == (2, 3, 64)
    assert state.wkv.shape == (2, 3, 2, 32, 32) and state.wkv.dtype == torch.float32
    assert state.batch_size == 3
    ones = RWKV7State(state.att_shift + 1, (state.wkv + 1).requires_grad_(), state.ffn_shift + 1)
    assert not ones.detach().wkv.requires_grad
    mixed = RWKV7State.where(torch.tensor([True, False, True]), ones, state)
    for field in ("att_shift", "wkv", "ffn_shift"):
        value = getattr(mixed, field)
        assert (value[:, 0] == 1).all() and (value[:, 1] == 0).all() and (value[:, 2] == 1).all()


def test_masked_commit_freezes_rows_during_stepping() -> None:
    """A row masked out of every commit ends with its initial state, the others advance as if alone."""
    stack = make_stack()
    x = torch.randn(2, 5, 64)
    state = stack.initial_state(2)
    keep = torch.tensor([True, False])
    for t in range(x.shape[1]):
        _, new = stack.step(x[:, t], state)
        state = RWKV7State.where(keep, new, state)
    _, alone = stack(x[:1])
    assert (state.wkv[:, 1] == 0).all()
    assert (state.wkv[:, :1] - alone.wkv).abs().max() < 1e-4

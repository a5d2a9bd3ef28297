"""RWKV-7 "Goose" in pure PyTorch (docs/models.md, RWKV-7): the WKV recurrence, time/channel mixing, blocks and a stack.

The WKV state of one head is S in R^{N_v x N_k} (BlinkDL layout, S[v_index, k_index], kept in fp32) and evolves as

    S_t = S_{t-1} diag(exp(w_t)) + (S_{t-1} a_t) b_t^T + v_t k_t^T,    y_t = S_t r_t

with w_t the *log* decay (-e^{-0.5} sigmoid(d), in (-0.6066, 0)), a = -kk and b = kk * a_icl (the fla convention).
Three implementations share that contract on tensors laid out [B, T, H, N]:

- `wkv_recurrent`: the per-step loop; the oracle (decoding runs its update as `wkv_step_fused`);
- `wkv_chunked`: the chunkwise-parallel (DPLR / generalised delta rule) form used to train on CPU;
- fla's `chunk_rwkv7` Triton kernel, picked by `wkv` for CUDA tensors when `fla` imports.

v_first (the value residual) restarts at the first block of every `RWKV7Stack`, since the H-Net reuses stacks of
different widths.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WKV_IMPLS = ("auto", "fla", "chunked", "recurrent")
_wkv_impl = "auto"
CHUNK_SIZE = 16  # chunk length of the torch chunked path (see wkv_chunked)
# Largest log-decay span inside one chunk of the factorised chunked form: keys are scaled by up to e^40 ~ 2e17.
_MAX_CHUNK_LOG_DECAY = 40.0

# -e^{-0.5}: the log decay is this times sigmoid(d), so decay = exp(log decay) lies in (0.545, 1).
_LOG_DECAY_SCALE = -math.exp(-0.5)


# ----------------------------------------------------------------------------------------------------------------------
# WKV kernels
# ----------------------------------------------------------------------------------------------------------------------


def _zero_state(r: Tensor) -> Tensor:
    batch, _, heads, n = r.shape
    return torch.zeros(batch, heads, n, n, device=r.device, dtype=torch.float32)


def _wkv_step(
    s: Tensor, r: Tensor, decay: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor
) -> tuple[Tensor, Tensor]:
    """One WKV-7 step on fp32 [B, H, N] inputs (decay = exp(w_log)) and state [B, H, N, N] -> (new state, y [B, H, N]).

    Shared by `wkv_recurrent` and the O(1) decoding path (`TimeMix.step`), which skips the [B, T] bookkeeping.
    """
    sa = s @ a.unsqueeze(-1)  # [B, H, N_v, 1]: what the removal key reads out of the old state
    s = torch.baddbmm(
        (s * decay.unsqueeze(-2)).flatten(0, 1),
        torch.cat([sa, v.unsqueeze(-1)], dim=-1).flatten(0, 1),
        torch.stack([b, k], dim=-2).flatten(0, 1),
    ).view(s.shape)  # S diag(decay) + [S a | v] [b | k]^T: the removal and the write as one rank-2 update
    return s, (s @ r.unsqueeze(-1)).squeeze(-1)


def wkv_step_fused(
    s: Tensor, r: Tensor, decay: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """`_wkv_step` as elementwise products and last-axis sums (the decoding step; `_wkv_step` is its oracle).

    Why: on CPU, bmm on [B*H, N, 1] matrix-vector products and the rank-2 [B*H, N, 2] update run ~7x slower than
    the same math as broadcast multiply-adds, and the state dominates a decoding step's memory traffic. `out`
    ([B, H, N, N] fp32, e.g. one layer's slice of the next stacked state) receives the new state without a later
    copy; it must not alias `s` and is refused while autograd records (out= is not differentiable).
    """
    if torch.compiler.is_compiling():
        # One stacked buffer makes inductor compute these [B, H, N] vectors once; otherwise it inlines their math
        # (normalisation, exp, the in-context rate) into the [B, H, N, N] state loop and redoes it per element: the
        # compiled nano step at batch 64 ran 4.1 ms that way, 3.1 ms this way (one thread, CPU).
        r, decay, k, v, a, b = torch.stack([r, decay, k, v, a, b]).unbind(0)
    sa = (s * a.unsqueeze(-2)).sum(-1)  # S a: what the removal key reads out of the old state
    new = s * decay.unsqueeze(-2) if out is None else torch.mul(s, decay.unsqueeze(-2), out=out)
    new.addcmul_(sa.unsqueeze(-1), b.unsqueeze(-2)).addcmul_(v.unsqueeze(-1), k.unsqueeze(-2))
    return new, (new * r.unsqueeze(-2)).sum(-1)


def wkv_recurrent(
    r: Tensor, w_log: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Reference per-step WKV-7 recurrence; inputs [B, T, H, N], state [B, H, N, N] (S[v, k]), fp32 inside.

    One Python iteration per token: the oracle for the chunked form and for the decoding step's `wkv_step_fused`.
    Returns (y [B, T, H, N] in r's dtype, final state [B, H, N, N] fp32).
    """
    s = _zero_state(r) if state is None else state.float()
    r32, w32, k32, v32, a32, b32 = (t.float() for t in (r, w_log, k, v, a, b))
    decay = torch.exp(w32)
    ys = []
    for t in range(r.shape[1]):
        s, y_t = _wkv_step(s, r32[:, t], decay[:, t], k32[:, t], v32[:, t], a32[:, t], b32[:, t])
        ys.append(y_t)
    y = torch.stack(ys, dim=1) if ys else r32.new_zeros(r.shape)
    return y.to(r.dtype), s


def _to_chunks(xs: Sequence[Tensor], n_chunks: int, chunk_size: int) -> list[Tensor]:
    """Several [B, T, H, N] tensors -> fp32 [B, H, n_chunks, chunk_size, N] each, zero-padding the tail.

    One stack / pad / permute copy for all of them (fewer small ops in forward and backward). Zero padding is
    exact: w_log = 0 (decay 1) and k = v = a = b = 0 leave the state unchanged.
    """
    batch, seq_len, heads, n = xs[0].shape
    pad = n_chunks * chunk_size - seq_len

    def head_major(t: Tensor) -> Tensor:
        t = F.pad(t.float(), (0, 0, 0, 0, 0, pad)) if pad else t.float()
        return t.reshape(batch, n_chunks, chunk_size, heads, n).permute(0, 3, 1, 2, 4)

    x = torch.stack([head_major(t) for t in xs])  # the one copy: stacking the permuted views makes them contiguous
    return list(x.unbind(0))


@functools.cache
def _strict_causal_mask(chunk_size: int, device: torch.device) -> Tensor:
    """[2C, 2C] float mask keeping j < t inside each of the four [C, C] blocks of the stacked coefficient matrix."""
    strict = torch.ones(chunk_size, chunk_size, device=device).tril(-1)
    return strict.repeat(2, 2)


def _safe_chunk_size(w_log: Tensor, chunk_size: int) -> int:
    """Largest chunk size <= chunk_size whose within-chunk log-decay span stays <= _MAX_CHUNK_LOG_DECAY.

    The factorised form scales keys by e^{-g_j}, g_j the cumulative log decay since the chunk start, which must not
    overflow fp32. Model decays (>= -0.6066 per step) never shrink the chunk for chunk_size <= 64; only inputs far
    outside that range (tests) fall back to smaller chunks, down to 1 (no intra-chunk pairs, always exact).
    """
    steepest = -float(w_log.detach().min()) if w_log.numel() else 0.0
    if not (chunk_size - 1) * steepest > _MAX_CHUNK_LOG_DECAY:  # also keeps the chunk for NaN inputs
        return chunk_size
    return max(1, min(chunk_size, int(_MAX_CHUNK_LOG_DECAY / steepest) + 1))


def wkv_chunked(
    r: Tensor,
    w_log: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Chunkwise-parallel WKV-7, equal to `wkv_recurrent` up to fp32 rounding; differentiable, for training.

    Within a chunk (local steps 1..C, chunk-start state S0, cumulative log decay g_t = sum_{s<=t} w_s) the state is

        S_t = S0 diag(e^{g_t}) + sum_{j<=t} (u_j b_j^T + v_j k_j^T) diag(e^{g_t - g_j}),   u_t = S_{t-1} a_t.

    The u's solve a unit lower-triangular system (I - A_ab) U = (a e^{g_{t-1}}) S0^T + A_ak V (the WY form), so every
    chunk reduces to an affine map S0 -> S0 M + D computed for all chunks at once by batched matrix ops; the only
    sequential work is T / chunk_size small matmuls.

    Every intra-chunk coefficient is a sum over channels of query_t * e^{g_t - g_j} * key_j (j < t); factorising
    e^{g_t - g_j} = e^{g_t} e^{-g_j} (reference: the chunk start) turns all four coefficient matrices (A_ab, A_ak and
    the strict parts of Q_rb, Q_rk) into one [2C, N] @ [N, 2C] matmul of decay-scaled queries and keys plus a causal
    mask, instead of a [C, C, N] tensor of pairwise decays. e^{g_t} <= 1 may underflow harmlessly; e^{-g_j} grows
    with the decay span of the chunk, which `_safe_chunk_size` bounds by e^40 (and the clamp keeps the never-used
    last key of a chunk finite, so no inf * 0 reaches the backward pass).
    Returns (y [B, T, H, N] in r's dtype, final state [B, H, N, N] fp32).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch, seq_len, heads, n = r.shape
    s = _zero_state(r) if state is None else state.float()
    if seq_len == 0:
        return r.new_zeros(r.shape), s
    chunk_size = _safe_chunk_size(w_log, chunk_size)
    n_chunks = -(-seq_len // chunk_size)
    r_, w_, k_, v_, a_, b_ = _to_chunks((r, w_log, k, v, a, b), n_chunks, chunk_size)

    g = w_.cumsum(dim=-2)  # inclusive cumulative log decay from the chunk start, <= 0
    key_scale = torch.exp((-g).clamp(max=_MAX_CHUNK_LOG_DECAY))  # e^{-g_j}; clamped only where unused (j = C)
    a_dec = a_ * torch.exp(g - w_)  # a_t e^{g_{t-1}}: the removal query sees the decay up to just before step t
    r_dec = r_ * torch.exp(g)  # r_t e^{g_t}
    b_key, k_key = b_ * key_scale, k_ * key_scale

    # coef = [[A_ab, A_ak], [Q_rb, Q_rk]] (strict parts), all [C, C] blocks of one product.
    coef = torch.cat([a_dec, r_dec], dim=-2) @ torch.cat([b_key, k_key], dim=-2).transpose(-1, -2)
    coef = coef * _strict_causal_mask(chunk_size, r.device)
    a_ab, a_ak = coef[..., :chunk_size, :chunk_size], coef[..., :chunk_size, chunk_size:]
    q_r = coef[..., chunk_size:, :]  # [Q_rb | Q_rk] without their diagonals r_t.b_t, r_t.k_t (added below)

    # The WY system (I - A_ab) [w_state | u_intra] = [a e^{g_{t-1}} | A_ak V]: one batched unit-triangular solve.
    eye = torch.eye(chunk_size, dtype=coef.dtype, device=coef.device)
    rhs = torch.cat([a_dec, a_ak @ v_], dim=-1)
    solved = torch.linalg.solve_triangular(eye - a_ab, rhs, upper=False, unitriangular=True)
    w_state, u_intra = solved[..., :n], solved[..., n:]  # U = w_state S0^T + u_intra

    # Per chunk: y = r_eff S0^T + y_intra, with r_eff = r e^{g} + Q_rb w_state and y_intra = Q_rb U + Q_rk V.
    rb, rk = (r_ * b_).sum(-1, keepdim=True), (r_ * k_).sum(-1, keepdim=True)
    q_r_out = q_r @ torch.cat([solved, torch.cat([torch.zeros_like(v_), v_], dim=-1)], dim=-2)
    r_eff = r_dec + q_r_out[..., :n] + rb * w_state
    y_intra = q_r_out[..., n:] + rb * u_intra + rk * v_

    # End of chunk: S_end = S0 M + D with M = diag(e^{g_C}) + w_state^T b_tail, D = U^T b_tail + V^T k_tail.
    g_last = g[..., -1:, :]
    tail = torch.exp(g_last - g)
    b_tail, k_tail = b_ * tail, k_ * tail
    to_end = solved.transpose(-1, -2) @ b_tail  # [w_state^T b_tail; u_intra^T b_tail]
    transition = to_end[..., :n, :] + torch.diag_embed(torch.exp(g_last.squeeze(-2)))
    additive = to_end[..., n:, :] + v_.transpose(-1, -2) @ k_tail

    starts = []
    for m_c, d_c in zip(transition.unbind(2), additive.unbind(2)):  # unbind: cheap backward, unlike indexing
        starts.append(s)
        s = torch.baddbmm(d_c.flatten(0, 1), s.flatten(0, 1), m_c.flatten(0, 1)).view(batch, heads, n, n)
    start_states = torch.stack(starts, dim=2)  # [B, H, n_chunks, N_v, N_k]

    y = r_eff @ start_states.transpose(-1, -2) + y_intra  # [B, H, n_chunks, C, N]
    y = y.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * chunk_size, heads, n)[:, :seq_len]
    return y.to(r.dtype), s


@functools.cache
def fla_available() -> bool:
    """Whether fla's RWKV-7 ops import (they need CUDA + Triton at call time; fla has no CPU fallback)."""
    if importlib.util.find_spec("fla") is None:
        return False
    try:
        importlib.import_module("fla.ops.rwkv7")
    except Exception:  # a broken Triton/driver install must not break the torch path
        return False
    return True


def wkv_fla(
    r: Tensor, w_log: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """fla's chunked Triton kernel; transposes the state because fla stores S as [B, H, K, V]."""
    from fla.ops.rwkv7 import chunk_rwkv7

    initial = None if state is None else state.float().transpose(-1, -2).contiguous()
    y, final = chunk_rwkv7(r, w_log, k, v, a, b, scale=1.0, initial_state=initial, output_final_state=True)
    return y, final.float().transpose(-1, -2)


def get_wkv_impl() -> str:
    """The module-wide WKV implementation used when `wkv` is called without `impl`."""
    return _wkv_impl


def set_wkv_impl(impl: str) -> None:
    """Force one WKV implementation module-wide ("auto", "fla", "chunked" or "recurrent")."""
    global _wkv_impl
    if impl not in WKV_IMPLS:
        raise ValueError(f"unknown WKV implementation {impl!r}; expected one of {WKV_IMPLS}")
    _wkv_impl = impl


@contextlib.contextmanager
def use_wkv_impl(impl: str) -> Iterator[None]:
    """Temporarily force a WKV implementation (benchmarks, parity tests)."""
    previous = get_wkv_impl()
    set_wkv_impl(impl)
    try:
        yield
    finally:
        set_wkv_impl(previous)


def wkv(
    r: Tensor,
    w_log: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    impl: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Dispatching WKV-7: T == 1 -> recurrent step; CUDA with fla -> fla; otherwise the torch chunked form.

    `impl` (or the module-wide `set_wkv_impl`) forces "fla", "chunked" or "recurrent"; "auto" chooses as above.
    """
    impl = get_wkv_impl() if impl is None else impl
    if impl not in WKV_IMPLS:
        raise ValueError(f"unknown WKV implementation {impl!r}; expected one of {WKV_IMPLS}")
    if impl == "auto":
        if r.shape[1] == 1:
            impl = "recurrent"
        elif r.is_cuda and fla_available():
            impl = "fla"
        else:
            impl = "chunked"
    if impl == "fla":
        return wkv_fla(r, w_log, k, v, a, b, state)
    if impl == "chunked":
        return wkv_chunked(r, w_log, k, v, a, b, state)
    return wkv_recurrent(r, w_log, k, v, a, b, state)


# ----------------------------------------------------------------------------------------------------------------------
# Initialisation helpers (docs/models.md, Initialisation)
# ----------------------------------------------------------------------------------------------------------------------


def lora_ranks(d_model: int) -> dict[str, int]:
    """LoRA ranks (decay, a, value, gate) of BlinkDL's trainer; Python's round is banker's, as upstream."""

    def rank(factor: float) -> int:
        return max(32, int(round(factor * math.sqrt(d_model) / 32) * 32))

    return {"w": rank(2.5), "a": rank(2.5), "v": rank(1.7), "g": rank(5.0)}


def _orthogonal(rows: int, cols: int, scale: float) -> Tensor:
    """BlinkDL's ortho_init: orthogonal with gain scale * sqrt(rows / cols) when rows > cols."""
    gain = math.sqrt(rows / cols) if rows > cols else 1.0
    return nn.init.orthogonal_(torch.empty(rows, cols), gain=gain * scale)


def _channel_ramp(d_model: int) -> Tensor:
    """ddd_i = i / C: the per-channel ramp behind the token-shift mix inits."""
    return torch.arange(d_model, dtype=torch.float32) / d_model


def _token_shift(x: Tensor, shift_state: Tensor) -> Tensor:
    """x_{t-1} for every position, taking the previous segment's last input for t = 0."""
    return torch.cat([shift_state.to(x.dtype).unsqueeze(1), x[:, :-1]], dim=1)


def _lora(
    x: Tensor, down: Tensor, up: Tensor, bias: Tensor | None = None, act: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """act(x @ down) @ up + bias, the RWKV-7 low-rank projections; the bias add is fused into the second matmul."""
    hidden = x @ down
    return F.linear(hidden if act is None else act(hidden), up.t(), bias)


# ----------------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------------


class TimeMix(nn.Module):
    """RWKV-7 time mixing (attention replacement): docs/models.md, Time mixing (init: its Initialisation).

    Layer 0 of a stack has no value-residual LoRA (v0/v1/v2): it *defines* v_first, so those parameters would be
    unused (as in fla); every other parameter and init follows BlinkDL's simplified trainer.
    """

    def __init__(self, d_model: int, head_size: int, layer_id: int, n_layers: int) -> None:
        super().__init__()
        if head_size < 1 or d_model % head_size:
            raise ValueError(f"d_model ({d_model}) must be divisible by head_size ({head_size})")
        if not 0 <= layer_id < n_layers:
            raise ValueError(f"layer_id must be in [0, {n_layers}), got {layer_id}")
        c, n = d_model, head_size
        self.d_model, self.head_size, self.n_heads, self.layer_id = c, n, c // n, layer_id

        ratio_0_to_1 = layer_id / max(n_layers - 1, 1)
        ratio_1_to_0 = 1.0 - layer_id / n_layers
        ddd = _channel_ramp(c)
        idx = torch.arange(c, dtype=torch.float32)
        linear = idx / max(c - 1, 1) - 0.5
        zig = ((idx % n) - (n - 1) / 2) / ((n - 1) / 2) if n > 1 else torch.zeros(c)
        zigzag = zig * zig.abs()
        www = -6 + 6 * (idx / max(c - 1, 1)) ** (1 + ratio_0_to_1**0.3)

        self.x_r = nn.Parameter(1.0 - ddd ** (0.2 * ratio_1_to_0))
        self.x_w = nn.Parameter(1.0 - ddd ** (0.9 * ratio_1_to_0))
        self.x_k = nn.Parameter(1.0 - ddd ** (0.7 * ratio_1_to_0))
        self.x_v = nn.Parameter(1.0 - ddd ** (0.7 * ratio_1_to_0))
        self.x_a = nn.Parameter(1.0 - ddd ** (0.9 * ratio_1_to_0))
        self.x_g = nn.Parameter(1.0 - ddd ** (0.2 * ratio_1_to_0))

        ranks = lora_ranks(c)
        self.w0 = nn.Parameter(www + 0.5 + 2.5 * zigzag)
        self.w1 = nn.Parameter(torch.zeros(c, ranks["w"]))
        self.w2 = nn.Parameter(_orthogonal(ranks["w"], c, 0.1))
        self.a0 = nn.Parameter(-0.19 + 0.3 * zigzag + 0.4 * linear)
        self.a1 = nn.Parameter(torch.zeros(c, ranks["a"]))
        self.a2 = nn.Parameter(_orthogonal(ranks["a"], c, 0.1))
        if layer_id > 0:
            self.v0 = nn.Parameter(0.73 - 0.4 * linear)
            self.v1 = nn.Parameter(torch.zeros(c, ranks["v"]))
            self.v2 = nn.Parameter(_orthogonal(ranks["v"], c, 0.1))
        self.g1 = nn.Parameter(torch.zeros(c, ranks["g"]))
        self.g2 = nn.Parameter(_orthogonal(ranks["g"], c, 0.1))
        self.k_k = nn.Parameter(0.71 - 0.1 * linear)
        self.k_a = nn.Parameter(torch.full((c,), 1.02))
        self.r_k = nn.Parameter(torch.full((self.n_heads, n), -0.04))

        self.receptance = nn.Linear(c, c, bias=False)
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)
        with torch.no_grad():
            self.receptance.weight.uniform_(-0.5 / math.sqrt(c), 0.5 / math.sqrt(c))
            self.key.weight.uniform_(-0.05 / math.sqrt(c), 0.05 / math.sqrt(c))
            self.value.weight.uniform_(-0.5 / math.sqrt(c), 0.5 / math.sqrt(c))
            self.output.weight.zero_()
        self.ln_x = nn.GroupNorm(self.n_heads, c, eps=64e-5)
        with torch.no_grad():
            self.ln_x.weight.fill_(((layer_id + 1) / n_layers) ** 0.7)

    def log_decay(self, xw: Tensor) -> Tensor:
        """w_log = -e^{-0.5} sigmoid(w0 + tanh(xw A_w) B_w), so the decay exp(w_log) lies in (0.545, 1)."""
        return _LOG_DECAY_SCALE * torch.sigmoid(_lora(xw, self.w1, self.w2, self.w0, torch.tanh))

    def forward(
        self, x: Tensor, v_first: Tensor | None, shift_state: Tensor, wkv_state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x: ln1-normalised input [B, T, C]; shift_state: previous normalised input [B, C]; wkv_state [B, H, N, N].

        Returns (out [B, T, C], v_first [B, T, C], new shift_state, new wkv_state).
        """
        out, v_first, new_wkv = self._mix(x, _token_shift(x, shift_state), v_first, wkv_state)
        return out, v_first, x[:, -1], new_wkv

    def step(
        self, x: Tensor, v_first: Tensor | None, shift_state: Tensor, wkv_state: Tensor, wkv_out: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One token, x [B, C]: `forward` on T = 1 for decoding, its WKV update `wkv_step_fused` (into `wkv_out`
        when given). Returns (out [B, C], v_first [B, C], new shift_state = x, new wkv_state)."""
        out, v_first, new_wkv = self._mix(x, shift_state.to(x.dtype), v_first, wkv_state, wkv_out)
        return out, v_first, x, new_wkv

    def lora_rates(self, mixed: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(w_log, icl_rate, value-residual gate or None on layer 0) from the w, a, v token-shift mixes mixed[:3]
        ([3, *lead, C]; layer 0 reads only mixed[:2]).

        Why: the three LoRAs share one rank, so they run as one bmm down, one tanh (decay only) and one baddbmm up
        with one sigmoid, instead of 6 matmuls and 3 sigmoids; equal to `log_decay` and `_lora` one by one.
        """
        first = self.layer_id == 0
        downs, ups, biases = [self.w1, self.a1], [self.w2, self.a2], [self.w0, self.a0]
        if not first:
            downs.append(self.v1)
            ups.append(self.v2)
            biases.append(self.v0)
        lead, c = mixed.shape[1:-1], mixed.shape[-1]
        flat = mixed[: len(downs)].reshape(len(downs), -1, c)
        hidden = torch.bmm(flat, torch.stack(downs))
        hidden = torch.cat([torch.tanh(hidden[:1]), hidden[1:]])  # the decay LoRA alone has a tanh
        rates = torch.sigmoid(torch.baddbmm(torch.stack(biases).unsqueeze(1), hidden, torch.stack(ups)))
        rates = rates.view(len(downs), *lead, c)
        return _LOG_DECAY_SCALE * rates[0], rates[1], None if first else rates[2]

    def _mix(
        self, x: Tensor, prev: Tensor, v_first: Tensor | None, wkv_state: Tensor, wkv_out: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The body on x and its token-shifted predecessor prev, [B, T, C] (sequence, `wkv`) or [B, C] (one step,
        `wkv_step_fused`)."""
        lead, c = x.shape[:-1], x.shape[-1]
        heads_view = (*lead, self.n_heads, self.head_size)
        if self.layer_id > 0 and v_first is None:
            raise ValueError(f"TimeMix layer {self.layer_id} needs the v_first of its stack's layer 0")
        # The six token-shift interpolations x + (prev - x) * mu as one broadcast op -> [6, *lead, C]; rows w, a, v
        # first, the LoRA inputs of `lora_rates`.
        mix = torch.stack([self.x_w, self.x_a, self.x_v, self.x_r, self.x_k, self.x_g]).view(6, *[1] * len(lead), c)
        mixed = torch.addcmul(x, prev - x, mix)
        w_log, icl_rate, v_gate = self.lora_rates(mixed)
        _, _, xv, xr, xk, xg = mixed.unbind(0)

        r = self.receptance(xr)
        k = self.key(xk)
        v = self.value(xv)
        if v_gate is None:
            v_first = v
        else:
            v = torch.lerp(v, v_first, v_gate)
        gate = _lora(xg, self.g1, self.g2, act=torch.sigmoid)

        kk = F.normalize((k * self.k_k).view(heads_view), dim=-1, p=2.0, eps=1e-12)
        k = k * (1 + (icl_rate - 1) * self.k_a)
        r_h, k_h, v_h = r.view(heads_view), k.view(heads_view), v.view(heads_view)
        a_h, b_h = -kk, kk * icl_rate.view(heads_view)
        if len(lead) == 2:
            y, new_wkv = wkv(r_h, w_log.view(heads_view), k_h, v_h, a_h, b_h, wkv_state)
        else:
            args = (t.float() for t in (r_h, torch.exp(w_log).view(heads_view), k_h, v_h, a_h, b_h))
            new_wkv, y = wkv_step_fused(wkv_state.float(), *args, out=wkv_out)
            y = y.to(x.dtype)

        y = self.ln_x(y.reshape(-1, c)).view(*lead, c)
        bonus = (r_h * k_h * self.r_k).sum(dim=-1, keepdim=True) * v_h
        return self.output((y + bonus.view(*lead, c)) * gate), v_first, new_wkv


class ChannelMix(nn.Module):
    """RWKV-7 channel mixing: a token-shifted relu^2 MLP with hidden size 4C (docs/models.md, Channel mixing)."""

    def __init__(self, d_model: int, layer_id: int, n_layers: int) -> None:
        super().__init__()
        ratio_1_to_0 = 1.0 - layer_id / n_layers
        self.x_k = nn.Parameter(1.0 - _channel_ramp(d_model) ** (ratio_1_to_0**4))
        self.key = nn.Linear(d_model, 4 * d_model, bias=False)
        self.value = nn.Linear(4 * d_model, d_model, bias=False)
        with torch.no_grad():
            self.key.weight.uniform_(-0.5 / math.sqrt(d_model), 0.5 / math.sqrt(d_model))
            self.value.weight.zero_()

    def forward(self, x: Tensor, shift_state: Tensor) -> tuple[Tensor, Tensor]:
        """x: ln2-normalised input [B, T, C]; returns (out [B, T, C], new shift_state [B, C])."""
        return self._mlp(x, _token_shift(x, shift_state)), x[:, -1]

    def step(self, x: Tensor, shift_state: Tensor) -> tuple[Tensor, Tensor]:
        """One token, x [B, C] -> (out [B, C], new shift_state = x)."""
        return self._mlp(x, shift_state.to(x.dtype)), x

    def _mlp(self, x: Tensor, prev: Tensor) -> Tensor:
        return self.value(torch.relu(self.key(torch.addcmul(x, prev - x, self.x_k))).square())


class Block(nn.Module):
    """Pre-norm RWKV-7 block: x += att(ln1(x)); x += ffn(ln2(x)); ln0 on the stack's first block only."""

    def __init__(self, d_model: int, head_size: int, layer_id: int, n_layers: int) -> None:
        super().__init__()
        self.ln0 = nn.LayerNorm(d_model) if layer_id == 0 else None
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.att = TimeMix(d_model, head_size, layer_id, n_layers)
        self.ffn = ChannelMix(d_model, layer_id, n_layers)

    def forward(
        self, x: Tensor, v_first: Tensor | None, att_shift: Tensor, wkv_state: Tensor, ffn_shift: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x [B, T, C] -> (x, v_first, att_shift, wkv_state, ffn_shift) with the layer's states advanced over x."""
        if self.ln0 is not None:
            x = self.ln0(x)
        att_out, v_first, att_shift, wkv_state = self.att(self.ln1(x), v_first, att_shift, wkv_state)
        x = x + att_out
        ffn_out, ffn_shift = self.ffn(self.ln2(x), ffn_shift)
        return x + ffn_out, v_first, att_shift, wkv_state, ffn_shift

    def step(
        self, x: Tensor, v_first: Tensor | None, att_shift: Tensor, wkv_state: Tensor, ffn_shift: Tensor,
        wkv_out: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """`forward` for one token x [B, C] (decoding); the new WKV state goes to `wkv_out` when given."""
        if self.ln0 is not None:
            x = self.ln0(x)
        att_out, v_first, att_shift, wkv_state = self.att.step(self.ln1(x), v_first, att_shift, wkv_state, wkv_out)
        x = x + att_out
        ffn_out, ffn_shift = self.ffn.step(self.ln2(x), ffn_shift)
        return x + ffn_out, v_first, att_shift, wkv_state, ffn_shift


# ----------------------------------------------------------------------------------------------------------------------
# Recurrent state and stack
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class RWKV7State:
    """Recurrent state of an `RWKV7Stack`, stacked over layers so it can be masked, detached and moved as a whole.

    att_shift [L, B, C] and ffn_shift [L, B, C] hold the previous token's normalised inputs (model dtype);
    wkv [L, B, H, N, N] holds the WKV matrices S[v, k] in fp32.
    """

    att_shift: Tensor
    wkv: Tensor
    ffn_shift: Tensor

    @classmethod
    def zeros(
        cls,
        batch: int,
        n_layers: int,
        d_model: int,
        head_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RWKV7State:
        """The sequence-start state (all zeros)."""
        heads = d_model // head_size
        return cls(
            att_shift=torch.zeros(n_layers, batch, d_model, device=device, dtype=dtype),
            wkv=torch.zeros(n_layers, batch, heads, head_size, head_size, device=device, dtype=torch.float32),
            ffn_shift=torch.zeros(n_layers, batch, d_model, device=device, dtype=dtype),
        )

    @property
    def batch_size(self) -> int:
        return self.att_shift.shape[1]

    def detach(self) -> RWKV7State:
        """Cut the autograd graph (truncated BPTT across segments)."""
        return RWKV7State(self.att_shift.detach(), self.wkv.detach(), self.ffn_shift.detach())

    @staticmethod
    def cat(states: list[RWKV7State]) -> RWKV7State:
        """Stack several states' rows into one batch (e.g. prompts prefilled separately, decoded together)."""
        return RWKV7State(torch.cat([s.att_shift for s in states], dim=1), torch.cat([s.wkv for s in states], dim=1),
                          torch.cat([s.ffn_shift for s in states], dim=1))

    def index_rows(self, rows: Tensor) -> RWKV7State:
        """The state of the given batch rows, in that order (rows may repeat: one prompt state -> G samples)."""
        return RWKV7State(self.att_shift.index_select(1, rows), self.wkv.index_select(1, rows),
                          self.ffn_shift.index_select(1, rows))

    @staticmethod
    def where(mask: Tensor, new: RWKV7State, old: RWKV7State) -> RWKV7State:
        """Per-row commit: rows with mask[b] True take `new`, the others keep `old` (batched masked decoding)."""

        def pick(a: Tensor, b: Tensor) -> Tensor:
            m = mask.to(device=a.device, dtype=torch.bool).view(1, -1, *([1] * (a.dim() - 2)))
            return torch.where(m, a, b)

        return RWKV7State(
            pick(new.att_shift, old.att_shift), pick(new.wkv, old.wkv), pick(new.ffn_shift, old.ffn_shift)
        )


class RWKV7Stack(nn.Module):
    """An isotropic stack of RWKV-7 blocks; v_first restarts at its first block. Output is not final-normed."""

    def __init__(self, d_model: int, n_layers: int, head_size: int = 64) -> None:
        super().__init__()
        if head_size < 1 or d_model % head_size:
            raise ValueError(f"d_model ({d_model}) must be divisible by head_size ({head_size})")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.d_model, self.n_layers, self.head_size = d_model, n_layers, head_size
        self.blocks = nn.ModuleList(Block(d_model, head_size, i, n_layers) for i in range(n_layers))

    def initial_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RWKV7State:
        """Zero state matching this stack's shapes (shift states in `dtype`, default the parameters' dtype)."""
        param = next(self.parameters())
        return RWKV7State.zeros(
            batch,
            self.n_layers,
            self.d_model,
            self.head_size,
            device=param.device if device is None else device,
            dtype=param.dtype if dtype is None else dtype,
        )

    def forward(self, x: Tensor, state: RWKV7State | None = None) -> tuple[Tensor, RWKV7State]:
        """x [B, T, C] -> (y [B, T, C], state after the last position); `state` None means sequence start."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected input [B, T, {self.d_model}], got {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("RWKV7Stack.forward needs at least one position (T >= 1)")
        return self._run(x, state, step=False)

    def step(self, x_t: Tensor, state: RWKV7State | None = None) -> tuple[Tensor, RWKV7State]:
        """One token: x_t [B, C] -> (y_t [B, C], new state); O(1) in the sequence length, without a time axis."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            raise ValueError(f"expected input [B, {self.d_model}], got {tuple(x_t.shape)}")
        return self._run(x_t, state, step=True)

    def _run(self, x: Tensor, state: RWKV7State | None, step: bool) -> tuple[Tensor, RWKV7State]:
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        # Eager decoding without autograd: every layer writes its new WKV state straight into the stacked result.
        # Not under torch.compile: inductor fuses the stack itself, and writing into slices of a fresh buffer made
        # the compiled step 2.5x slower at batch 64 on CPU (5.96 -> 11.6 ms vs 4.5 ms without, nano, one thread).
        eager_decoding = step and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        wkv_out = torch.empty_like(state.wkv) if eager_decoding else None
        v_first: Tensor | None = None
        att_shifts, wkvs, ffn_shifts = [], [], []
        for i, (block, att_shift, wkv_state, ffn_shift) in enumerate(zip(
            self.blocks, state.att_shift.unbind(0), state.wkv.unbind(0), state.ffn_shift.unbind(0)
        )):
            if step:
                x, v_first, att_shift, wkv_state, ffn_shift = block.step(
                    x, v_first, att_shift, wkv_state, ffn_shift, None if wkv_out is None else wkv_out[i]
                )
            else:
                x, v_first, att_shift, wkv_state, ffn_shift = block(x, v_first, att_shift, wkv_state, ffn_shift)
            att_shifts.append(att_shift)
            wkvs.append(wkv_state)
            ffn_shifts.append(ffn_shift)
        wkv_all = torch.stack(wkvs) if wkv_out is None else wkv_out
        return x, RWKV7State(torch.stack(att_shifts), wkv_all, torch.stack(ffn_shifts))

"""RWKV-7 "Goose" in pure PyTorch (model.md §2): the WKV recurrence, time/channel mixing, blocks and a stack.

The WKV state of one head is S in R^{N_v x N_k} (BlinkDL layout, S[v_index, k_index], kept in fp32) and evolves as

    S_t = S_{t-1} diag(exp(w_t)) + (S_{t-1} a_t) b_t^T + v_t k_t^T,    y_t = S_t r_t

with w_t the *log* decay (-e^{-0.5} sigmoid(d), in (-0.6066, 0)), a = -kk and b = kk * a_icl (the fla convention).
Three implementations share that contract on tensors laid out [B, T, H, N]:

- `wkv_recurrent`: the per-step loop; the oracle and the O(1)-per-token generation path (T == 1);
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
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WKV_IMPLS = ("auto", "fla", "chunked", "recurrent")
_wkv_impl = "auto"
CHUNK_SIZE = 16  # chunk length of the torch chunked path (see wkv_chunked)

# -e^{-0.5}: the log decay is this times sigmoid(d), so decay = exp(log decay) lies in (0.545, 1).
_LOG_DECAY_SCALE = -math.exp(-0.5)


# ----------------------------------------------------------------------------------------------------------------------
# WKV kernels
# ----------------------------------------------------------------------------------------------------------------------


def _zero_state(r: Tensor) -> Tensor:
    batch, _, heads, n = r.shape
    return torch.zeros(batch, heads, n, n, device=r.device, dtype=torch.float32)


def wkv_recurrent(
    r: Tensor, w_log: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Reference per-step WKV-7 recurrence; inputs [B, T, H, N], state [B, H, N, N] (S[v, k]), fp32 inside.

    One Python iteration per token: this is the oracle for the chunked form and the T == 1 decoding path.
    Returns (y [B, T, H, N] in r's dtype, final state [B, H, N, N] fp32).
    """
    s = _zero_state(r) if state is None else state.float()
    r32, w32, k32, v32, a32, b32 = (t.float() for t in (r, w_log, k, v, a, b))
    decay = torch.exp(w32)
    ys = []
    for t in range(r.shape[1]):
        sa = s @ a32[:, t].unsqueeze(-1)  # [B, H, N_v, 1]: what the removal key reads out of the old state
        s = (
            s * decay[:, t].unsqueeze(-2)
            + sa * b32[:, t].unsqueeze(-2)
            + v32[:, t].unsqueeze(-1) * k32[:, t].unsqueeze(-2)
        )
        ys.append((s @ r32[:, t].unsqueeze(-1)).squeeze(-1))
    y = torch.stack(ys, dim=1) if ys else r32.new_zeros(r.shape)
    return y.to(r.dtype), s


def _to_chunks(x: Tensor, n_chunks: int, chunk_size: int) -> Tensor:
    """[B, T, H, N] -> fp32 [B, H, n_chunks, chunk_size, N], zero-padding the tail.

    Zero padding is exact: w_log = 0 (decay 1) and k = v = a = b = 0 leave the state unchanged.
    """
    batch, seq_len, heads, n = x.shape
    x = x.float()
    pad = n_chunks * chunk_size - seq_len
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
    return x.view(batch, n_chunks, chunk_size, heads, n).permute(0, 3, 1, 2, 4).contiguous()


def _unit_lower_inverse(strict_lower: Tensor) -> Tensor:
    """(I - A)^{-1} for strictly lower-triangular A [..., C, C], as the finite product (I + A)(I + A^2)(I + A^4)...

    A is nilpotent (A^C = 0), so ceil(log2 C) batched matmuls give the exact inverse; unlike a batched triangular
    solve this stays a few large kernels in forward and backward.
    """
    size = strict_lower.shape[-1]
    inverse = torch.eye(size, dtype=strict_lower.dtype, device=strict_lower.device) + strict_lower
    power = strict_lower
    for _ in range(max(math.ceil(math.log2(size)) - 1, 0)):
        power = power @ power
        inverse = inverse + inverse @ power
    return inverse


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
    sequential work is T / chunk_size small matmuls. Pairwise decays e^{g_{t-1} - g_j} are formed as differences and
    masked to j < t before exp, so nothing overflows whatever the decay.
    Returns (y [B, T, H, N] in r's dtype, final state [B, H, N, N] fp32).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch, seq_len, heads, n = r.shape
    s = _zero_state(r) if state is None else state.float()
    if seq_len == 0:
        return r.new_zeros(r.shape), s
    n_chunks = -(-seq_len // chunk_size)
    r_, w_, k_, v_, a_, b_ = (_to_chunks(t, n_chunks, chunk_size) for t in (r, w_log, k, v, a, b))

    g = w_.cumsum(dim=-2)  # inclusive cumulative log decay, <= 0
    g_excl = g - w_  # decay from the chunk start to just before step t
    g_last = g[..., -1:, :]

    # Strictly causal pairwise decays decay[j, t] = e^{g_{t-1} - g_j} for j < t (else 0), laid out [..., j, t, N] so
    # the contractions below are batched matmuls over j. The inclusive decay e^{g_t - g_j} is e^{w_t} times this
    # (e^{w_t} <= 1), plus the j == t diagonal, handled separately.
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=r.device).triu(diagonal=1)  # j < t
    diff = g_excl.unsqueeze(-3) - g.unsqueeze(-2)
    decay = torch.exp(diff.masked_fill(~causal.unsqueeze(-1), -math.inf))

    # coef[t, j] = (a_t, r_t e^{w_t}) x (b_j, k_j) through the decay: A_ab, A_ak and the strict parts of Q_rb, Q_rk.
    queries = torch.stack([a_, r_ * torch.exp(w_)], dim=-2)  # [..., t, 2, N]
    b_and_k = torch.stack([b_, k_], dim=-1)  # [..., j, N, 2]
    coef = (decay.unsqueeze(-2) * queries.unsqueeze(-4)).flatten(-3, -2) @ b_and_k  # [..., j, 2t, 2]
    coef = coef.unflatten(-2, (chunk_size, 2)).permute(0, 1, 2, 5, 6, 4, 3).contiguous()  # [..., q, key, t, j]
    a_ab, a_ak = coef[..., 0, 0, :, :], coef[..., 0, 1, :, :]
    q_rb = coef[..., 1, 0, :, :] + torch.diag_embed((r_ * b_).sum(-1))
    q_rk = coef[..., 1, 1, :, :] + torch.diag_embed((r_ * k_).sum(-1))

    rhs = torch.cat([a_ * torch.exp(g_excl), a_ak @ v_], dim=-1)
    solved = _unit_lower_inverse(a_ab) @ rhs
    w_state, u_intra = solved[..., :n], solved[..., n:]  # U = w_state S0^T + u_intra

    # Per chunk: y = r_eff S0^T + y_intra and S_end = S0 M + D.
    r_eff = r_ * torch.exp(g) + q_rb @ w_state
    y_intra = q_rb @ u_intra + q_rk @ v_
    tail = torch.exp(g_last - g)
    b_tail, k_tail = b_ * tail, k_ * tail
    transition = torch.diag_embed(torch.exp(g_last.squeeze(-2))) + w_state.transpose(-1, -2) @ b_tail
    additive = u_intra.transpose(-1, -2) @ b_tail + v_.transpose(-1, -2) @ k_tail

    starts = []
    for m_c, d_c in zip(transition.unbind(2), additive.unbind(2)):  # unbind: cheap backward, unlike indexing
        starts.append(s)
        s = s @ m_c + d_c
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
# Initialisation helpers (model.md §2.3)
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


# ----------------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------------


class TimeMix(nn.Module):
    """RWKV-7 time mixing (attention replacement), model.md §2.1, with the §2.3 init.

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
        return _LOG_DECAY_SCALE * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w1) @ self.w2)

    def forward(
        self, x: Tensor, v_first: Tensor | None, shift_state: Tensor, wkv_state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x: ln1-normalised input [B, T, C]; shift_state: previous normalised input [B, C]; wkv_state [B, H, N, N].

        Returns (out [B, T, C], v_first [B, T, C], new shift_state, new wkv_state).
        """
        batch, seq_len, c = x.shape
        heads, n = self.n_heads, self.head_size
        xx = _token_shift(x, shift_state) - x
        xr, xw, xk = x + xx * self.x_r, x + xx * self.x_w, x + xx * self.x_k
        xv, xa, xg = x + xx * self.x_v, x + xx * self.x_a, x + xx * self.x_g

        r = self.receptance(xr)
        w_log = self.log_decay(xw)
        k = self.key(xk)
        v = self.value(xv)
        if self.layer_id == 0:
            v_first = v
        elif v_first is None:
            raise ValueError(f"TimeMix layer {self.layer_id} needs the v_first of its stack's layer 0")
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        icl_rate = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        gate = torch.sigmoid(xg @ self.g1) @ self.g2

        heads_view = (batch, seq_len, heads, n)
        kk = F.normalize((k * self.k_k).view(heads_view), dim=-1, p=2.0, eps=1e-12)
        k = k * (1 + (icl_rate - 1) * self.k_a)
        r_h, k_h, v_h = r.view(heads_view), k.view(heads_view), v.view(heads_view)
        y, new_wkv = wkv(r_h, w_log.view(heads_view), k_h, v_h, -kk, kk * icl_rate.view(heads_view), wkv_state)

        y = self.ln_x(y.reshape(batch * seq_len, c)).view(batch, seq_len, c)
        bonus = (r_h * k_h * self.r_k).sum(dim=-1, keepdim=True) * v_h
        y = y + bonus.reshape(batch, seq_len, c)
        return self.output(y * gate), v_first, x[:, -1], new_wkv


class ChannelMix(nn.Module):
    """RWKV-7 channel mixing: a token-shifted relu^2 MLP with hidden size 4C (model.md §2.2)."""

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
        k = x + (_token_shift(x, shift_state) - x) * self.x_k
        return self.value(torch.relu(self.key(k)) ** 2), x[:, -1]


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
        """Returns (x, v_first, att_shift, wkv_state, ffn_shift) with the layer's states advanced over x."""
        if self.ln0 is not None:
            x = self.ln0(x)
        att_out, v_first, att_shift, wkv_state = self.att(self.ln1(x), v_first, att_shift, wkv_state)
        x = x + att_out
        ffn_out, ffn_shift = self.ffn(self.ln2(x), ffn_shift)
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
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        v_first: Tensor | None = None
        att_shifts, wkvs, ffn_shifts = [], [], []
        for i, block in enumerate(self.blocks):
            x, v_first, att_shift, wkv_state, ffn_shift = block(
                x, v_first, state.att_shift[i], state.wkv[i], state.ffn_shift[i]
            )
            att_shifts.append(att_shift)
            wkvs.append(wkv_state)
            ffn_shifts.append(ffn_shift)
        return x, RWKV7State(torch.stack(att_shifts), torch.stack(wkvs), torch.stack(ffn_shifts))

    def step(self, x_t: Tensor, state: RWKV7State | None = None) -> tuple[Tensor, RWKV7State]:
        """One token: x_t [B, C] -> (y_t [B, C], new state); O(1) in the sequence length."""
        y, state = self.forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), state

"""H-Net dynamic chunking over RWKV-7 stacks: a hierarchical byte LM that learns where to chunk. The equations are in
docs/models.md, H-Net; the steps named below ("step 2", ...) are those of its "One stage" section.

Each non-innermost stage runs an encoder over its sequence, a router marks boundaries where adjacent encoder states
differ (cosine of identity-initialised projections), the boundary positions alone go to the inner stage, and the
inner output is smoothed by an EMA over chunks (weighted by the boundary probabilities), expanded back to every
position, multiplied by a straight-through confidence and added to a zero-initialised residual before the decoder.

Two execution paths share the parameters and must agree to fp32 rounding (tests/unit/test_hnet.py):

- `forward`: the parallel training path. Rows of an inner stage have different numbers of chunks, so every stage
  takes right-padded inputs plus per-row valid `lengths`; padding sits after the valid positions and, the model being
  causal, never reaches them. The dechunk EMA is a blocked scan (closed form inside blocks of `EMA_BLOCK` chunks, one
  Python iteration per block). With a carried state, `forward` continues a sequence; the state it returns is exact
  per row: stacks whose rows end before the padded length are re-run on each row group's valid prefix (only when a
  state is requested, i.e. prefill / continuation, never in a plain training step).
- `step`: one byte per row for batched generation. The outer encoder and decoder step every byte; a row's
  inner stages and dechunk EMA advance only when its router fires. All rows are computed and committed per row with
  `where(mask, new, old)`, so a batch never has to be split.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aegir.models.lm import check_generate_args, continue_sampling, run_step
from aegir.models.rwkv7 import RWKV7Stack, RWKV7State

KNOWN_LETTERS = {"w": "RWKV-7 block (TimeMix + relu^2 4x ChannelMix)"}
EMA_BLOCK = 64  # chunks per closed-form block of the dechunk EMA: [B, 64, 64] weights, L / 64 sequential steps
PROB_EPS = 1e-4  # the EMA clamps P to [eps, 1 - eps] (dechunk), so a chunk never fully ignores or erases the past
_MIN_LOG_WEIGHT = -60.0  # EMA weights below e^-60 are exact zeros (see ema_scan)
_CODE = re.compile(r"([A-Za-z])(\d+)")


# ----------------------------------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSpec:
    """One isotropic stack: the layer codes of its layout string, e.g. "w4" -> (("w", 4),)."""

    codes: tuple[tuple[str, int], ...]

    @property
    def n_layers(self) -> int:
        return sum(count for _, count in self.codes)


@dataclass(frozen=True)
class StageSpec:
    """One stage of the hierarchy: [encoder, inner, decoder] at width d_model, or the innermost [main]."""

    d_model: int
    encoder: StackSpec | None = None
    inner: StageSpec | None = None
    decoder: StackSpec | None = None
    main: StackSpec | None = None

    @property
    def is_innermost(self) -> bool:
        return self.main is not None

    @property
    def depth(self) -> int:
        """Number of stages from this one inwards (1 for the innermost)."""
        return 1 if self.inner is None else 1 + self.inner.depth


def parse_stack(code: str, where: str) -> StackSpec:
    """Parse a layout string like "w2" or "w2w1"; `where` names the stack in error messages."""
    if not isinstance(code, str) or not code:
        raise ValueError(f"arch_layout {where}: expected a non-empty layout string like 'w4', got {code!r}")
    codes, pos = [], 0
    while pos < len(code):
        match = _CODE.match(code, pos)
        if match is None:
            raise ValueError(f"arch_layout {where}: cannot parse {code!r} at position {pos} (expected letter+count)")
        letter, count = match.group(1), int(match.group(2))
        if letter not in KNOWN_LETTERS:
            raise ValueError(f"arch_layout {where}: unknown layer letter {letter!r} at position {pos} of {code!r} "
                             f"(known: {sorted(KNOWN_LETTERS)})")
        if count < 1:
            raise ValueError(f"arch_layout {where}: layer count must be >= 1 at position {pos} of {code!r}")
        codes.append((letter, count))
        pos = match.end()
    return StackSpec(tuple(codes))


def parse_layout(arch_layout: Sequence[Any], d_model: Sequence[int]) -> StageSpec:
    """Nested [encoder, inner, decoder] lists down to [main] -> a StageSpec tree; d_model has one width per stage.

    Inner stages may only be as wide or wider than their parent (the widening is a learned pad).
    """

    def build(layout: Any, stage: int) -> StageSpec:
        where = f"stage {stage}"
        if not isinstance(layout, (list, tuple)) or len(layout) not in (1, 3):
            raise ValueError(f"arch_layout {where}: expected [encoder, inner, decoder] or [main], got {layout!r}")
        if stage >= len(d_model):
            raise ValueError(f"d_model has {len(d_model)} widths but arch_layout is deeper (stage {stage})")
        width = int(d_model[stage])
        if len(layout) == 1:
            return StageSpec(width, main=parse_stack(layout[0], f"{where} main"))
        inner = build(layout[1], stage + 1)
        if inner.d_model < width:
            raise ValueError(f"d_model[{stage + 1}] = {inner.d_model} is narrower than d_model[{stage}] = {width}")
        return StageSpec(width, encoder=parse_stack(layout[0], f"{where} encoder"), inner=inner,
                         decoder=parse_stack(layout[2], f"{where} decoder"))

    spec = build(arch_layout, 0)
    if spec.depth != len(d_model):
        raise ValueError(f"d_model has {len(d_model)} widths but arch_layout has {spec.depth} stages")
    return spec


# ----------------------------------------------------------------------------------------------------------------------
# Recurrent state
# ----------------------------------------------------------------------------------------------------------------------


class _RowState:
    """Per-row operations shared by the H-Net state dataclasses, applied field by field (batch is dim 0 of tensors;
    nested RWKV7State / _RowState fields delegate to their own methods)."""

    def _map(self, tensor_fn: Any, state_fn: Any) -> Any:
        values = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            values[field.name] = tensor_fn(value) if isinstance(value, Tensor) else state_fn(value)
        return type(self)(**values)

    def detach(self) -> Any:
        return self._map(Tensor.detach, lambda s: s.detach())

    def index_rows(self, rows: Tensor) -> Any:
        """The state of the given rows, in that order (rows may repeat: one prompt state -> G samples)."""
        return self._map(lambda t: t.index_select(0, rows), lambda s: s.index_rows(rows))

    @staticmethod
    def cat(states: Sequence[Any]) -> Any:
        """Stack several states' rows into one batch."""
        first = states[0]
        values = {}
        for field in dataclasses.fields(first):
            parts = [getattr(s, field.name) for s in states]
            values[field.name] = torch.cat(parts, 0) if isinstance(parts[0], Tensor) else type(parts[0]).cat(parts)
        return type(first)(**values)

    @staticmethod
    def where(mask: Tensor, new: Any, old: Any) -> Any:
        """Per-row commit: rows with mask[b] True take `new`, the others keep `old`."""
        values = {}
        for field in dataclasses.fields(new):
            a, b = getattr(new, field.name), getattr(old, field.name)
            if isinstance(a, Tensor):
                values[field.name] = torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)
            else:
                values[field.name] = type(a).where(mask, a, b)
        return type(new)(**values)


@dataclass
class RoutingState(_RowState):
    """The previous encoder output per row (the router compares adjacent states) and whether one was seen yet."""

    last_hidden: Tensor  # [B, d]
    seen: Tensor  # [B] bool: False at sequence start, where p = 1 is forced


@dataclass
class DeChunkState(_RowState):
    """The latest EMA value z̄ per row, repeated at every non-boundary byte."""

    last_value: Tensor  # [B, d]


@dataclass
class StageState(_RowState):
    """Everything one non-innermost stage carries between bytes; `inner` is the next stage or the main stack."""

    encoder: RWKV7State
    routing: RoutingState
    inner: Union[StageState, RWKV7State]
    dechunk: DeChunkState
    decoder: RWKV7State


HNetState = StageState


def _scatter_row_states(parts: list[tuple[Tensor, Any]], batch: int) -> Any:
    """Reassemble per-row-group states [(rows, state of those rows)] into one state in row order 0..batch-1."""
    rows = torch.cat([r for r, _ in parts])
    state = type(parts[0][1]).cat([s for _, s in parts])
    inverse = torch.empty(batch, dtype=torch.long, device=rows.device)
    inverse[rows] = torch.arange(batch, device=rows.device)
    return state.index_rows(inverse)


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------------


class Isotropic(nn.Module):
    """An RWKV-7 stack (v_first restarts here) with an optional final LayerNorm, run on right-padded rows.

    The final norm matches the official Isotropic (the router and residual read normalised encoder outputs); the
    outermost decoder leaves it to the LM's ln_out.
    """

    def __init__(self, spec: StackSpec, d_model: int, head_size: int, final_norm: bool = True) -> None:
        super().__init__()
        self.stack = RWKV7Stack(d_model, spec.n_layers, head_size)
        self.norm = nn.LayerNorm(d_model) if final_norm else nn.Identity()

    def initial_state(self, batch: int, device: torch.device | None = None) -> RWKV7State:
        return self.stack.initial_state(batch, device=device)

    def forward(
        self, x: Tensor, lengths: Tensor, state: RWKV7State | None, with_state: bool
    ) -> tuple[Tensor, RWKV7State | None]:
        """x [B, L, d] with row b valid up to lengths[b] -> (y [B, L, d], state after each row's last valid input).

        The padded run's final state is right only for full rows; shorter row groups are re-run on their prefix.
        """
        y, final = self.stack(x, state)
        if not with_state:
            return self.norm(y), None
        seq_len = x.shape[1]
        if bool((lengths == seq_len).all()):
            return self.norm(y), final
        start = self.initial_state(x.shape[0], x.device) if state is None else state
        parts = []
        for n in torch.unique(lengths).tolist():
            rows = (lengths == n).nonzero().squeeze(1)
            if n == seq_len:
                parts.append((rows, final.index_rows(rows)))
            elif n == 0:
                parts.append((rows, start.index_rows(rows)))
            else:
                parts.append((rows, self.stack(x[rows, :n], start.index_rows(rows))[1]))
        return self.norm(y), _scatter_row_states(parts, x.shape[0])

    def step(self, x_t: Tensor, state: RWKV7State) -> tuple[Tensor, RWKV7State]:
        y, state = self.stack.step(x_t, state)
        return self.norm(y), state


class RoutingModule(nn.Module):
    """Boundary probabilities from the cosine of adjacent projected encoder states (step 2).

    p_t = clamp((1 - cos(q(h_{t-1}), k(h_t))) / 2, 0, 1): q reads the previous state, k the current one (the
    official code's order). q and k start as identities, so initially a boundary marks a direction change of h.
    The first position of a sequence has p = 1 (always a boundary); a boundary is p > 0.5 (ties are not).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        with torch.no_grad():
            self.q_proj.weight.copy_(torch.eye(d_model))
            self.k_proj.weight.copy_(torch.eye(d_model))

    def initial_state(self, batch: int, d_model: int, device: torch.device | None) -> RoutingState:
        return RoutingState(torch.zeros(batch, d_model, device=device), torch.zeros(batch, dtype=torch.bool,
                                                                                     device=device))

    def _prob(self, prev: Tensor, cur: Tensor) -> Tensor:
        cos = (F.normalize(self.q_proj(prev), dim=-1) * F.normalize(self.k_proj(cur), dim=-1)).sum(-1)
        return ((1 - cos) / 2).clamp(0.0, 1.0)

    def forward(self, h: Tensor, state: RoutingState) -> Tensor:
        """h [B, L, d] -> p [B, L]; position 0 compares against the carried previous state, if any."""
        prev = torch.cat([state.last_hidden.to(h.dtype).unsqueeze(1), h[:, :-1]], dim=1)
        p = self._prob(prev, h)
        first = torch.where(state.seen, p[:, 0], torch.ones_like(p[:, 0]))
        return torch.cat([first.unsqueeze(1), p[:, 1:]], dim=1)

    def step(self, h_t: Tensor, state: RoutingState) -> tuple[Tensor, RoutingState]:
        """h_t [B, d] -> (p [B], state holding h_t)."""
        p = self._prob(state.last_hidden.to(h_t.dtype), h_t)
        p = torch.where(state.seen, p, torch.ones_like(p))
        return p, RoutingState(h_t, torch.ones_like(state.seen))


class ChunkLayer(nn.Module):
    """Downsampling by selection (step 3): each row's boundary positions, left-packed and right-padded."""

    def forward(self, h: Tensor, boundary: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h [B, L, d], boundary [B, L] bool -> (chunks [B, M, d], counts [B], index [B, M]) with M = max count.

        Positions >= counts[b] of row b are padding (they hold non-boundary states and are never read back).
        """
        seq_len = h.shape[1]
        counts = boundary.sum(dim=1)
        max_chunks = int(counts.max()) if counts.numel() else 0
        key = torch.arange(seq_len, device=h.device) + (~boundary).long() * seq_len  # boundaries first, in order
        index = key.argsort(dim=1)[:, :max_chunks]
        chunks = h.gather(1, index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        return chunks, counts, index


def ema_scan(values: Tensor, probs: Tensor, initial: Tensor, block: int = EMA_BLOCK) -> Tensor:
    """z_j = P_j v_j + (1 - P_j) z_{j-1} with z_{-1} = initial; values [B, M, d], probs [B, M] in (0, 1).

    Closed form inside each block of `block` steps, with S_j the cumulative sum of log(1 - P):
        z_j = sum_{i <= j} e^{S_j - S_i} P_i v_i + e^{S_j} z_start.
    Only differences S_j - S_i <= 0 are exponentiated (the rest are masked to -inf first), so nothing overflows
    however small 1 - P gets; blocks keep the weight matrix at [B, block, block]. One Python step per block.
    Weights below e^{_MIN_LOG_WEIGHT} (~1e-26, far under fp32 resolution of the sum) are set to exactly 0: left
    alone they become fp32 subnormals, which made CPU training steps ~50x slower.
    """
    batch, length, dim = values.shape
    values32, probs32 = values.float(), probs.float()
    log_keep = torch.log1p(-probs32)
    causal = torch.ones(block, block, dtype=torch.bool, device=values.device).tril()
    carry, outs = initial.float(), []
    for start in range(0, length, block):
        stop = min(start + block, length)
        cum = log_keep[:, start:stop].cumsum(dim=1)  # [B, C]
        diff = cum.unsqueeze(2) - cum.unsqueeze(1)
        diff = diff.masked_fill(~causal[: stop - start, : stop - start] | (diff < _MIN_LOG_WEIGHT), -math.inf)
        weights = torch.exp(diff) * probs32[:, start:stop].unsqueeze(1)  # [B, C(j), C(i)]
        carry_weight = torch.exp(cum.masked_fill(cum < _MIN_LOG_WEIGHT, -math.inf))
        out = weights @ values32[:, start:stop] + carry_weight.unsqueeze(-1) * carry.unsqueeze(1)
        outs.append(out)
        carry = out[:, -1]
    if not outs:
        return values32.new_zeros(batch, 0, dim)
    return torch.cat(outs, dim=1)


class DeChunkLayer(nn.Module):
    """Upsampling (step 5): an EMA over chunk outputs weighted by their boundary probabilities, held between
    boundaries. Smoothing lets the router's probabilities shape the output, a gradient path besides the STE."""

    def forward(
        self, chunk_out: Tensor, chunk_probs: Tensor, boundary: Tensor, counts: Tensor, state: DeChunkState
    ) -> tuple[Tensor, DeChunkState]:
        """chunk_out [B, M, d] (rows valid up to counts), chunk_probs [B, M], boundary [B, L] -> (out [B, L, d]).

        Byte t reads the EMA at its latest boundary; bytes before the segment's first boundary (only possible with a
        carried state) read the carried value.
        """
        smoothed = ema_scan(chunk_out, chunk_probs.clamp(PROB_EPS, 1 - PROB_EPS), state.last_value)
        with_carry = torch.cat([state.last_value.float().unsqueeze(1), smoothed], dim=1)  # chunk -1 = carried value
        index = boundary.long().cumsum(dim=1)
        out = with_carry.gather(1, index.unsqueeze(-1).expand(-1, -1, with_carry.shape[-1]))
        last = with_carry[torch.arange(counts.shape[0], device=counts.device), counts]
        return out.to(chunk_out.dtype), DeChunkState(last.to(state.last_value.dtype))

    def step(self, chunk_out_t: Tensor, p_t: Tensor, boundary_t: Tensor, state: DeChunkState) -> DeChunkState:
        """Advance the EMA on boundary rows (P = clamped p), hold it elsewhere (P = 0)."""
        prob = torch.where(boundary_t, p_t.float().clamp(PROB_EPS, 1 - PROB_EPS), torch.zeros_like(p_t.float()))
        prob = prob.unsqueeze(-1)
        value = prob * chunk_out_t.float() + (1 - prob) * state.last_value.float()
        return DeChunkState(value.to(state.last_value.dtype))


def straight_through_confidence(p: Tensor, boundary: Tensor) -> Tensor:
    """STE(c), c = p on boundaries and 1 - p elsewhere (step 6): exactly 1 forward, gradient dL/dc to the router.

    (c - sg(c)) is exactly 0, so the forward value is bit-exact 1 and the decoder input equals step()'s.
    """
    confidence = torch.where(boundary, p, 1 - p)
    return (confidence - confidence.detach()) + 1.0


def ratio_loss(boundary_frac: Tensor, mean_prob: Tensor, target: float) -> Tensor:
    """N/(N-1) ((N-1) F G + (1-F)(1-G)) (Ratio loss): 1 at F = G = 1/N; the gradient flows through G only."""
    n = target
    return n / (n - 1) * ((n - 1) * boundary_frac * mean_prob + (1 - boundary_frac) * (1 - mean_prob))


@dataclass
class StageStats:
    """Router statistics of one stage over the valid positions of a batch (outer stage first)."""

    boundary_frac: float  # F: fraction of positions that are boundaries
    mean_prob: float  # G: mean boundary probability
    compression: float  # realised positions per chunk, 1 / F
    ratio_loss: Tensor  # unweighted L_ratio, differentiable through G
    degenerate: bool  # every position a boundary, or none besides each row's first: the router has collapsed


def router_stats(p: Tensor, boundary: Tensor, valid: Tensor, target: float) -> StageStats:
    """F, G, realised compression, ratio loss and the collapse flag over the valid positions of p / boundary [B, L].

    Degenerate: every valid position is a boundary, or no row has a boundary besides its first position.
    """
    n_valid = valid.sum().clamp(min=1)
    n_boundary = boundary.sum()
    frac = n_boundary / n_valid
    mean_prob = (p * valid).sum() / n_valid
    n_rows = int(valid.any(dim=1).sum())
    degenerate = bool(n_boundary == valid.sum()) or int(n_boundary) <= n_rows
    frac_value = float(frac)
    return StageStats(frac_value, float(mean_prob.detach()), 1.0 / frac_value if frac_value > 0 else math.inf,
                      ratio_loss(frac.detach().float(), mean_prob.float(), target), degenerate)


@dataclass
class HNetAux:
    """Auxiliary outputs of a forward pass: add `loss` (α Σ_s L_ratio^s) to the LM loss."""

    loss: Tensor
    stages: list[StageStats]


# ----------------------------------------------------------------------------------------------------------------------
# Stage and model
# ----------------------------------------------------------------------------------------------------------------------


class HNetStage(nn.Module):
    """A non-innermost stage: encoder -> route -> chunk -> inner -> dechunk -> STE + residual -> decoder (One stage)."""

    def __init__(
        self, spec: StageSpec, head_size: int, targets: Sequence[float], outermost: bool = True
    ) -> None:
        super().__init__()
        assert spec.inner is not None and spec.encoder is not None and spec.decoder is not None
        d, d_inner = spec.d_model, spec.inner.d_model
        self.d_model, self.d_inner, self.target = d, d_inner, float(targets[0])
        self.encoder = Isotropic(spec.encoder, d, head_size)
        self.routing = RoutingModule(d)
        self.chunk = ChunkLayer()
        self.inner: nn.Module
        if spec.inner.is_innermost:
            assert spec.inner.main is not None
            self.inner = Isotropic(spec.inner.main, d_inner, head_size)
        else:
            self.inner = HNetStage(spec.inner, head_size, targets[1:], outermost=False)
        self.dechunk = DeChunkLayer()
        self.decoder = Isotropic(spec.decoder, d, head_size, final_norm=not outermost)
        # Zero weight: at init the decoder sees only the upsampled inner output (the residual is the bias).
        self.residual_proj = nn.Linear(d, d)
        # Learned filler for the extra inner channels when the inner stage is wider (step 4); sliced off on return.
        self.pad_dimension = nn.Parameter(torch.zeros(d_inner - d)) if d_inner > d else None
        with torch.no_grad():
            self.residual_proj.weight.zero_()

    def initial_state(self, batch: int, device: torch.device | None = None) -> StageState:
        return StageState(
            encoder=self.encoder.initial_state(batch, device),
            routing=self.routing.initial_state(batch, self.d_model, device),
            inner=self.inner.initial_state(batch, device),
            dechunk=DeChunkState(torch.zeros(batch, self.d_model, device=device)),
            decoder=self.decoder.initial_state(batch, device),
        )

    def _widen(self, x: Tensor) -> Tensor:
        if self.pad_dimension is None:
            return x
        return torch.cat([x, self.pad_dimension.to(x.dtype).expand(*x.shape[:-1], -1)], dim=-1)

    def _residual(self, h: Tensor) -> Tensor:
        return F.linear(h.float(), self.residual_proj.weight.float(), self.residual_proj.bias.float())

    def forward(
        self, x: Tensor, lengths: Tensor, state: StageState, with_state: bool
    ) -> tuple[Tensor, StageState | None, list[StageStats]]:
        """x [B, L, d], rows valid up to lengths -> (y [B, L, d], state or None, stats of this and inner stages)."""
        batch, seq_len, _ = x.shape
        valid = torch.arange(seq_len, device=x.device) < lengths.unsqueeze(1)
        h, enc_state = self.encoder(x, lengths, state.encoder, with_state)
        residual = self._residual(h)
        p = self.routing(h, state.routing)
        boundary = (p > 0.5) & valid
        chunks, counts, index = self.chunk(h, boundary)
        inner_state: Any = state.inner
        inner_stats: list[StageStats] = []
        if chunks.shape[1] > 0:
            inner_args = (self._widen(chunks), counts, state.inner, with_state)
            if isinstance(self.inner, HNetStage):
                inner_out, inner_state, inner_stats = self.inner(*inner_args)
            else:
                inner_out, inner_state = self.inner(*inner_args)
            inner_out = inner_out[..., : self.d_model]
        else:  # no row has a boundary in this segment (continuation only): the inner stage is not run
            inner_out = chunks
        upsampled, dechunk_state = self.dechunk(inner_out, p.gather(1, index), boundary, counts, state.dechunk)
        z = upsampled.float() * straight_through_confidence(p, boundary).unsqueeze(-1) + residual
        y, dec_state = self.decoder(z.to(x.dtype), lengths, state.decoder, with_state)
        stats = [router_stats(p, boundary, valid, self.target), *inner_stats]
        if not with_state:
            return y, None, stats
        has_input = lengths > 0
        last = h[torch.arange(batch, device=x.device), (lengths - 1).clamp(min=0)]
        routing_state = RoutingState(torch.where(has_input.unsqueeze(1), last.to(state.routing.last_hidden.dtype),
                                                 state.routing.last_hidden), state.routing.seen | has_input)
        new = StageState(enc_state, routing_state, inner_state, dechunk_state, dec_state)  # type: ignore[arg-type]
        return y, new, stats

    def step(self, x_t: Tensor, state: StageState, active: Tensor | None) -> tuple[Tensor, StageState]:
        """One input per row, x_t [B, d]; rows where `active` is False are computed but keep their old state.

        active None: every row advances (the outermost stage), which skips the per-row commit of the whole state.
        """
        h, enc_state = self.encoder.step(x_t, state.encoder)
        residual = self._residual(h)
        p, routing_state = self.routing.step(h, state.routing)
        boundary = p > 0.5
        fires = boundary if active is None else boundary & active
        if isinstance(self.inner, HNetStage):
            inner_out, inner_state = self.inner.step(self._widen(h), state.inner, fires)
        else:
            inner_out, inner_state = self.inner.step(self._widen(h), state.inner)
            inner_state = RWKV7State.where(fires, inner_state, state.inner)
        dechunk_state = self.dechunk.step(inner_out[..., : self.d_model], p, boundary, state.dechunk)
        z = dechunk_state.last_value.float() * straight_through_confidence(p, boundary).unsqueeze(-1) + residual
        y, dec_state = self.decoder.step(z.to(x_t.dtype), state.decoder)
        new = StageState(enc_state, routing_state, inner_state, dechunk_state, dec_state)
        return y, new if active is None else StageState.where(active, new, state)


class HNetLM(nn.Module):
    """Byte LM: embedding -> H-Net of RWKV-7 stacks -> ln_out -> (tied) head.

    `forward(ids, state=None)` is the parallel path and sets `self.last_aux` (ratio loss and router stats).
    `step(ids_t, state)` decodes one byte per row. `generate` prefills with `forward` and then steps.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: Sequence[int],
        arch_layout: Sequence[Any],
        head_size: int = 64,
        target_compression: Sequence[float] | None = None,
        ratio_loss_weight: float = 0.03,
        tie_embeddings: bool = True,
        compile_step: bool = False,
    ) -> None:
        super().__init__()
        self.compile_step = compile_step
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.spec = parse_layout(arch_layout, d_model)
        if self.spec.is_innermost:
            raise ValueError("arch_layout needs at least one [encoder, inner, decoder] stage; use ByteLM otherwise")
        n_routed = self.spec.depth - 1
        targets = [2.0] * n_routed if target_compression is None else [float(t) for t in target_compression]
        if len(targets) != n_routed or any(not t > 1 for t in targets):
            raise ValueError(f"target_compression needs {n_routed} values > 1 (one per non-innermost stage), "
                             f"got {list(targets)}")
        self.vocab_size, self.tie_embeddings = vocab_size, tie_embeddings
        self.target_compression, self.ratio_loss_weight = targets, float(ratio_loss_weight)
        width = self.spec.d_model
        self.emb = nn.Embedding(vocab_size, width)
        self.hnet = HNetStage(self.spec, head_size, targets)
        self.ln_out = nn.LayerNorm(width)
        self.head = None if tie_embeddings else nn.Linear(width, vocab_size, bias=False)
        self.last_aux: HNetAux | None = None
        with torch.no_grad():  # ByteLM's init (docs/models.md, Initialisation): ln0 rescales the embedding
            nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
            if self.head is not None:
                gain = 0.5 * math.sqrt(vocab_size / width) if vocab_size > width else 0.5
                nn.init.orthogonal_(self.head.weight, gain=gain)

    def num_parameters(self) -> int:
        """Distinct trainable parameters (a tied embedding/head is counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave out `last_aux`: it holds non-leaf tensors of the latest graph, which
        copy.deepcopy refuses (GRPO's frozen reference policy is a deepcopy of the policy)."""
        state = self.__dict__.copy()
        state["last_aux"] = None
        return state

    def initial_state(self, batch: int) -> HNetState:
        return self.hnet.initial_state(batch, self.emb.weight.device)

    def logits(self, hidden: Tensor) -> Tensor:
        weight = self.emb.weight if self.head is None else self.head.weight
        return F.linear(self.ln_out(hidden), weight)

    def forward(
        self, ids: Tensor, state: HNetState | None = None, *, with_state: bool | None = None
    ) -> tuple[Tensor, HNetState | None]:
        """ids [B, T] -> (logits [B, T, V], state after the last byte); continues from `state` when given.

        with_state None computes the returned state only when it can be wanted and is not free: when a state was
        passed or autograd is off (prefill). A training step (grad on, no state) skips it and returns None.
        """
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must be [B, T] with T >= 1, got {tuple(ids.shape)}")
        if with_state is None:
            with_state = state is not None or not torch.is_grad_enabled()
        batch, seq_len = ids.shape
        start = self.initial_state(batch) if state is None else state
        lengths = torch.full((batch,), seq_len, dtype=torch.long, device=ids.device)
        hidden, new_state, stats = self.hnet(self.emb(ids), lengths, start, with_state)
        self.last_aux = HNetAux(self.ratio_loss_weight * torch.stack([s.ratio_loss for s in stats]).sum(), stats)
        return self.logits(hidden), new_state

    def step(self, ids_t: Tensor, state: HNetState) -> tuple[Tensor, HNetState]:
        """One byte per row: ids_t [B] -> (logits [B, V], new state); compiled with `compile_step` (decoding)."""
        return run_step(self, HNetLM._eager_step, self.compile_step, ids_t, state)

    def _eager_step(self, ids_t: Tensor, state: HNetState) -> tuple[Tensor, HNetState]:
        hidden, state = self.hnet.step(self.emb(ids_t), state, None)
        return self.logits(hidden), state

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue prompt_ids [B, T0] by up to max_new_tokens bytes (as `ByteLM.generate`): one parallel prefill
        that also extracts each row's state, then one `step` per byte."""
        check_generate_args(prompt_ids, max_new_tokens)
        if max_new_tokens == 0:
            return prompt_ids.clone()
        logits, state = self(prompt_ids, with_state=True)
        assert state is not None
        return continue_sampling(self.step, prompt_ids, logits[:, -1], state, max_new_tokens, temperature, top_p,
                                 eos_id, generator)

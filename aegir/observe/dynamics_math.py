"""The mathematics of the learning-dynamics instruments (docs/observatory.md), as plain functions of arrays.

No Lightning, no files: the callback (aegir/observe/observatory.py) gathers weights, gradients and probe read-outs
and hands them here. Every function is unit-tested against hand-computed values (tests/unit/test_dynamics_math.py).

Conventions:
- a *layer* is a group of parameters named by `layer_of` (a block `...blocks.3`, a decoder layer `layers.3`, or a
  top-level module such as `emb`, `ln_out`, `head`);
- relative drift of a layer from a reference snapshot is ||W - W_ref|| / ||W_ref|| over all its parameters
  (Frobenius norms of the concatenated tensors); NaN when the reference is all zeros (e.g. a LoRA B matrix at init);
- RSA geometry drift between two snapshots is 1 - Pearson r of the upper triangles of the probes' cosine-similarity
  matrices (0: the same geometry up to rotation and scale; 1: unrelated; up to 2: inverted);
- ECE is sum_b (n_b / N) |acc_b - conf_b| over 15 equal-width confidence bins (lo, hi] (confidence 0 falls in the
  first), MCE the largest such gap over non-empty bins, adaptive ECE the same over bins of equal count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

LOG_HALF = math.log(0.5)
_WRAPPERS = ("base_model.model.", "_forward_module.", "module.")
_INDEXED = re.compile(r"^(.*?\.\d+)(?:\.|$)")


# --------------------------------------------------------------------------------------------------- layers
def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name up to the first numeric component (`body.blocks.2.att.key.weight`
    -> `body.blocks.2`; `model.layers.0.self_attn.q_proj.lora_A.default.weight` -> `model.layers.0`), else its
    first two components when it has at least three (`hnet.routing.q_proj.weight` -> `hnet.routing`), else the
    first (`emb.weight` -> `emb`). Wrapper prefixes of peft / DDP (`base_model.model.`, `module.`) are dropped."""
    for prefix in _WRAPPERS:
        if name.startswith(prefix):
            name = name[len(prefix):]
    match = _INDEXED.match(name)
    if match:
        return match.group(1)
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) >= 3 else parts[0]


def group_by_layer(names: Iterable[str]) -> dict[str, list[str]]:
    """Parameter names grouped by `layer_of`, layers in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(layer_of(name), []).append(name)
    return groups


def layer_sq_norms(tensors: Mapping[str, Tensor], groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Sum of squares of every layer's tensors (float64)."""
    out = {}
    for layer, names in groups.items():
        present = [tensors[n] for n in names if n in tensors]
        out[layer] = float(sum(float(t.detach().double().pow(2).sum()) for t in present))
    return out


def layer_norms(tensors: Mapping[str, Tensor], groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Frobenius norm of every layer (all its tensors concatenated)."""
    return {layer: math.sqrt(sq) for layer, sq in layer_sq_norms(tensors, groups).items()}


def relative_drift(current: Mapping[str, Tensor], reference: Mapping[str, Tensor],
                   groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """||W - W_ref|| / ||W_ref|| per layer; NaN where the reference norm is 0."""
    out = {}
    for layer, names in groups.items():
        diff_sq = ref_sq = 0.0
        for name in names:
            if name in current and name in reference:
                ref = reference[name].detach().double()
                diff_sq += float((current[name].detach().double() - ref).pow(2).sum())
                ref_sq += float(ref.pow(2).sum())
        out[layer] = math.sqrt(diff_sq) / math.sqrt(ref_sq) if ref_sq > 0 else math.nan
    return out


def total_norm(layer_values: Mapping[str, float]) -> float:
    """The global norm from per-layer norms: sqrt(sum of squares), NaN if any is NaN."""
    return math.sqrt(sum(v * v for v in layer_values.values())) if layer_values else math.nan


# --------------------------------------------------------------------------------------------------- stability
def stability_alarms(rows: Sequence[Mapping[str, Any]], *, weight_explode: float, grad_explode: float,
                     grad_vanish: float, dead_after: int, dead_tol: float) -> dict[str, list[str]]:
    """Alarms raised by the latest learning-history row given every row so far (oldest first), as
    {alarm: [layers]} with only the raised alarms:

    - `nonfinite`: a layer's weight or gradient norm is NaN / inf;
    - `exploding_weights`: weight norm > weight_explode x its norm in the reference row (when that was > 0);
    - `vanishing_weights`: weight norm < its reference norm / weight_explode (when that was > 0);
    - `exploding_gradients`: gradient norm > grad_explode x its first recorded gradient norm (when > 0);
    - `vanishing_gradients`: gradient norm < grad_vanish (absolute) for a layer that had a gradient before;
    - `dead_layers`: drift from the previous snapshot < dead_tol in each of the last `dead_after` rows.

    Rows hold `weight_norm`, `grad_norm`, `drift_prev`: {layer: value or None}. The reference row of the weight
    alarms is the first one after training started (the second row): layers initialised near zero (embeddings at
    U(+-1e-4), LoRA B matrices) grow by orders of magnitude in the first steps by design."""
    if len(rows) < 2:
        return {}
    last, first = rows[-1], rows[1]
    alarms: dict[str, list[str]] = {}

    def add(name: str, layer: str) -> None:
        alarms.setdefault(name, [])
        if layer not in alarms[name]:
            alarms[name].append(layer)

    weights, grads = last.get("weight_norm") or {}, last.get("grad_norm") or {}
    for layer, value in weights.items():
        if value is None or not math.isfinite(value):
            add("nonfinite", layer)
            continue
        base = (first.get("weight_norm") or {}).get(layer)
        if base and math.isfinite(base) and base > 0:
            if value > weight_explode * base:
                add("exploding_weights", layer)
            elif value < base / weight_explode:
                add("vanishing_weights", layer)
    first_grad: dict[str, float] = {}
    for row in rows:
        for layer, value in (row.get("grad_norm") or {}).items():
            if layer not in first_grad and value is not None and math.isfinite(value) and value > 0:
                first_grad[layer] = value
    for layer, value in grads.items():
        if value is None:
            continue
        if not math.isfinite(value):
            add("nonfinite", layer)
        elif layer in first_grad and value > grad_explode * first_grad[layer]:
            add("exploding_gradients", layer)
        elif layer in first_grad and value < grad_vanish:
            add("vanishing_gradients", layer)
    if dead_after > 0 and len(rows) >= dead_after:
        recent = rows[-dead_after:]
        for layer in (last.get("drift_prev") or {}):
            values = [(r.get("drift_prev") or {}).get(layer) for r in recent]
            if all(v is not None and math.isfinite(v) and v < dead_tol for v in values):
                add("dead_layers", layer)
    return alarms


# --------------------------------------------------------------------------------------------------- geometry
def mean_pool(hidden: Tensor, lengths: Tensor) -> Tensor:
    """Mean over the first lengths[b] positions of hidden [B, T, C] -> [B, C]."""
    mask = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths.to(hidden.device)[:, None])
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def cosine_similarity_matrix(x: np.ndarray) -> np.ndarray:
    """[N, N] cosine similarities of the rows of x (a zero row has similarity 0 with everything)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return unit @ unit.T


def rsa_drift(a: np.ndarray, b: np.ndarray) -> float:
    """1 - Pearson r between the upper triangles (i < j) of the cosine-similarity matrices of a [N, C] and
    b [N, C'] (the same N probes in the same order; the widths may differ). NaN with fewer than 3 probes or a
    constant triangle."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"RSA needs the same probes in both snapshots, got {a.shape[0]} and {b.shape[0]}")
    n = a.shape[0]
    if n < 3:
        return math.nan
    upper = np.triu_indices(n, k=1)
    x, y = cosine_similarity_matrix(a)[upper], cosine_similarity_matrix(b)[upper]
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if denom == 0:
        return math.nan
    return 1.0 - float((x * y).sum()) / denom


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The rows of x [N, C] projected on their first two principal components, [N, 2]; each component's sign is
    fixed so that its largest-magnitude loading is positive (the same input always gives the same picture)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    if centred.shape[0] < 2:
        return np.zeros((centred.shape[0], 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    for i in range(comps.shape[0]):
        if comps[i, np.argmax(np.abs(comps[i]))] < 0:
            comps[i] = -comps[i]
    out = centred @ comps.T
    if out.shape[1] < 2:
        out = np.concatenate([out, np.zeros((out.shape[0], 2 - out.shape[1]))], axis=1)
    return out


# --------------------------------------------------------------------------------------------------- calibration
def _ece_over(conf: np.ndarray, correct: np.ndarray, bin_ids: np.ndarray, n_bins: int
              ) -> tuple[float, float, list[dict[str, float]]]:
    total = conf.size
    ece, mce, bins = 0.0, 0.0, []
    for b in range(n_bins):
        in_bin = bin_ids == b
        count = int(in_bin.sum())
        if count == 0:
            bins.append({"conf": math.nan, "acc": math.nan, "count": 0})
            continue
        acc, mean_conf = float(correct[in_bin].mean()), float(conf[in_bin].mean())
        gap = abs(acc - mean_conf)
        ece += count / total * gap
        mce = max(mce, gap)
        bins.append({"conf": mean_conf, "acc": acc, "count": count})
    return ece, mce, bins


def expected_calibration_error(conf: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray,
                               n_bins: int = 15) -> tuple[float, float, list[dict[str, float]]]:
    """(ECE, MCE, bins) over `n_bins` equal-width bins (lo, hi] of [0, 1]; each bin is {conf, acc, count} (conf and
    acc NaN when empty). NaN, NaN, [] without predictions."""
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return math.nan, math.nan, []
    bin_ids = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return _ece_over(conf, correct, bin_ids, n_bins)


def adaptive_calibration_error(conf: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray,
                               n_bins: int = 15) -> float:
    """ECE over `n_bins` bins holding (as nearly as possible) equal numbers of predictions, sorted by confidence
    (ties broken by input order)."""
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return math.nan
    order = np.argsort(conf, kind="stable")
    bin_ids = np.empty(conf.size, dtype=int)
    for b, chunk in enumerate(np.array_split(order, min(n_bins, conf.size))):
        bin_ids[chunk] = b
    ece, _, _ = _ece_over(conf, correct, bin_ids, min(n_bins, conf.size))
    return ece


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Shannon entropy in nats of softmax(logits) over the last axis (-inf logits are excluded outcomes)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    return -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)


def position_profile(values: Sequence[float], positions: Sequence[int], width: int) -> list[float | None]:
    """Mean of `values` at each position 0..width-1 (None where no value falls)."""
    sums, counts = np.zeros(width), np.zeros(width)
    for v, p in zip(values, positions):
        if 0 <= p < width:
            sums[p] += v
            counts[p] += 1
    return [float(s / c) if c else None for s, c in zip(sums, counts)]


# --------------------------------------------------------------------------------------------------- trajectories
def learned_order(steps: Sequence[int], logprobs: Sequence[Sequence[float]],
                  threshold: float = LOG_HALF) -> list[int | None]:
    """For each answer token, the first snapshot step at which its log-prob exceeded `threshold` (log 0.5: the
    model puts more than half its mass on it), or None if it never did. `logprobs[s][t]` is token t's log-prob
    at snapshot `steps[s]` (snapshots in training order)."""
    width = max((len(row) for row in logprobs), default=0)
    out: list[int | None] = [None] * width
    for step, row in zip(steps, logprobs):
        for t, value in enumerate(row):
            if out[t] is None and value is not None and value > threshold:
                out[t] = int(step)
    return out


def first_divergence(predicted: Sequence[int], target: Sequence[int]) -> int | None:
    """The first position where `predicted` differs from `target` (a shorter prediction diverges where it ends), or
    None when they are equal."""
    for i, expected in enumerate(target):
        if i >= len(predicted) or predicted[i] != expected:
            return i
    return None if len(predicted) == len(target) else len(target)


def histogram(values: Sequence[int], width: int) -> list[int]:
    """Counts of the integers 0..width-1 in `values` (values beyond are counted in the last bin)."""
    counts = [0] * max(width, 1)
    for v in values:
        counts[min(int(v), len(counts) - 1)] += 1
    return counts


def most_moved(names: Sequence[str], current: Mapping[str, float | None], base: Mapping[str, float | None] | None,
               limit: int) -> list[str]:
    """The `limit` names whose score moved most from `base` (|current - base|, a missing score read as 0), in
    their original order; all of them when there are no more than `limit`. Ties keep the earlier name. Without a
    base, the first `limit`. Why: a radar with ~80 axes (CTA label families) is unreadable."""
    if len(names) <= limit:
        return list(names)
    if base is None:
        return list(names[:limit])

    def moved(name: str) -> float:
        return abs(float(current.get(name) or 0.0) - float(base.get(name) or 0.0))

    ranked = sorted(range(len(names)), key=lambda i: (-moved(names[i]), i))[:limit]
    return [names[i] for i in sorted(ranked)]

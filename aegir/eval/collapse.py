"""Representation-collapse diagnostics and the liveness gate (issue 7; names in docs/metrics.md, live/*).

Why: fine-tuning from random initialisation can collapse the encoder, pooling every input to one vector and predicting
one label, while the loss and the router statistics still look plausible. These numbers make that impossible to miss:

    live/mcl_clusters     Markov clusters of the pooled embeddings (aegir.eval.mcl)    collapsed: 1
    live/distinct_preds   distinct predicted labels                                     collapsed: 1
    live/top1_share       share of predictions that are the most common label           mode collapse: >= 0.5
    live/spread_ratio     max pairwise L2 / mean L2 norm                                collapsed: < ~1e-2
    live/rankme           RankMe effective rank, uncentred (Garrido et al. 2023)        collapsed: ~1
    live/rankme_centered  RankMe of the centred embeddings (noise-sensitive: pair it with spread_ratio)
    live/mean_cosine      mean pairwise cosine similarity                                collapsed: ~1
    live/dim_var_max, live/dim_var_median   per-dimension variance                      collapsed: ~0
    val/macro_f1          macro F1 (torchmetrics; docs/metrics.md)                      collapsed: <= ~1/num_classes

`liveness_metrics` returns all of them in one dict for `self.log_dict` / the final metrics; `default_liveness_gates`
declares the three gates of issue 7 in the spine's gate format (aegir.eval.gates), so a config can say

    gates:
      live_mcl_clusters:   {metric: live/mcl_clusters,   op: ">=", value: 3}
      live_macro_f1:       {metric: val/macro_f1,        op: ">=", value: 0.1}
      live_distinct_preds: {metric: live/distinct_preds, op: ">=", value: 10}
      required: true

Per-stage chunk statistics (`chunk/stage<s>/boundary_frac`) come from the model's router, not from here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from aegir.eval.mcl import DEFAULT_SIM_ATOL, markov_cluster

MCL_CLUSTERS = "live/mcl_clusters"
DISTINCT_PREDS = "live/distinct_preds"
TOP1_SHARE = "live/top1_share"
SPREAD_RATIO = "live/spread_ratio"
RANKME = "live/rankme"
RANKME_CENTERED = "live/rankme_centered"
MEAN_COSINE = "live/mean_cosine"
DIM_VAR_MAX = "live/dim_var_max"
DIM_VAR_MEDIAN = "live/dim_var_median"
MACRO_F1 = "val/macro_f1"
EMBEDDING_METRICS = (MCL_CLUSTERS, SPREAD_RATIO, RANKME, RANKME_CENTERED, MEAN_COSINE, DIM_VAR_MAX, DIM_VAR_MEDIAN)

# Defaults of issue 7's liveness gate.
MIN_CLUSTERS = 3
MIN_MACRO_F1 = 0.10
MIN_DISTINCT_PREDS = 10
RANKME_EPS = 1e-7  # Garrido et al.'s epsilon in p_k = sigma_k / ||sigma||_1 + eps


def _embeddings64(x: Any) -> np.ndarray:
    """[n, d] float64 numpy from torch or numpy: collapsed features differ in the 3rd-6th digit; float32 loses it."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be [n, d], got shape {tuple(arr.shape)}")
    return arr


def _labels(x: Any) -> np.ndarray:
    """Label ids [n] from ids or from scores [n, C] (argmax over the last dim)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu").numpy()
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr.argmax(axis=-1)
    if arr.ndim != 1:
        raise ValueError(f"predictions must be label ids [n] or scores [n, C], got shape {tuple(arr.shape)}")
    return arr.astype(np.int64, copy=False)


def _subsample(n: int, max_points: int | None, seed: int) -> np.ndarray:
    """Deterministic subset of row indices (sorted), all of them when n <= max_points."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def spread_ratio(embeddings: Any, *, max_points: int | None = 2048, seed: int = 0) -> float:
    """Max pairwise L2 distance / mean L2 norm: a scale-free width of the cloud.

    Collapse when below ~1e-2 (Aegir's collapsed run: 0.020 / 6.98 = 2.9e-3). Exact over all points (or a seeded
    subset of `max_points`), not a 50-sample estimate, since n ~ 2 k costs milliseconds. All-zero input is
    0 (no spread at all); fewer than 2 points is NaN (no pair to measure).
    """
    x = _embeddings64(embeddings)
    x = x[_subsample(x.shape[0], max_points, seed)]
    if x.shape[0] < 2:
        return math.nan
    mean_norm = float(np.linalg.norm(x, axis=1).mean())
    centred = x - x.mean(axis=0)  # distances are translation-free; centring avoids |x|^2 cancellation near collapse
    sq = (centred * centred).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (centred @ centred.T)
    max_dist = math.sqrt(max(float(d2.max()), 0.0))
    if mean_norm == 0.0:
        return 0.0
    return max_dist / mean_norm


def rankme(embeddings: Any, *, centered: bool = False, eps: float = RANKME_EPS) -> float:
    """RankMe (Garrido et al., ICML 2023): exp of the entropy of the L1-normalised singular values (+ eps).

    Equals d for d orthogonal equal-norm directions and ~1 for a rank-one matrix. Uncentred by default as in the
    paper; centred, isotropic noise around a collapsed point reads as high rank, so always read it
    next to spread_ratio. A zero matrix has rank 0.
    """
    x = torch.as_tensor(_embeddings64(embeddings))
    if x.numel() == 0:
        return math.nan
    if centered:
        x = x - x.mean(dim=0, keepdim=True)
    sigma = torch.linalg.svdvals(x)
    total = float(sigma.sum())
    if total == 0.0:
        return 0.0
    p = sigma / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def mean_pairwise_cosine(embeddings: Any, *, max_points: int | None = 2048, seed: int = 0) -> float:
    """Mean cosine similarity over distinct pairs; ~1 means every input points one way. Zero vectors are identical
    to each other (1) and unrelated to the rest (0), as in aegir.eval.mcl, so an all-zero batch reads as collapsed."""
    x = _embeddings64(embeddings)
    x = x[_subsample(x.shape[0], max_points, seed)]
    n = x.shape[0]
    if n < 2:
        return math.nan
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    nonzero = norms[:, 0] > 0
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    s = unit.sum(axis=0)
    zeros = n - int(nonzero.sum())
    # ordered pairs: |sum of unit vectors|^2 minus the self-pairs of non-zero rows, plus the zero-zero pairs
    total = float(s @ s) - float(nonzero.sum()) + zeros * (zeros - 1)
    return total / (n * (n - 1))


def dimension_variance(embeddings: Any) -> tuple[float, float]:
    """(max, median) per-dimension variance (ddof=0). Aegir's collapsed run: 2.96e-6 and 4.5e-8."""
    x = _embeddings64(embeddings)
    if x.shape[0] == 0:
        return math.nan, math.nan
    var = x.var(axis=0)
    return float(var.max()), float(np.median(var))


def prediction_histogram(preds: Any, num_classes: int) -> np.ndarray:
    """Count of each predicted label, [num_classes] (labels outside [0, num_classes) are an error)."""
    labels = _labels(preds)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"predicted labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_classes)


def distinct_predictions(preds: Any) -> int:
    """Number of distinct predicted labels (1 under full mode collapse)."""
    return int(np.unique(_labels(preds)).size)


def top1_share(preds: Any) -> float:
    """Fraction of predictions equal to the most frequent predicted label; >= 0.5 is mode collapse. NaN if empty."""
    labels = _labels(preds)
    if labels.size == 0:
        return math.nan
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max()) / labels.size


def macro_f1(preds: Any, targets: Any, num_classes: int) -> float:
    """Macro F1 as torchmetrics' MulticlassF1Score(average="macro") computes it (classes absent from both preds and
    targets are left out of the mean), so it matches a loop that logs val/macro_f1 with the metric object."""
    p = torch.as_tensor(_labels(preds))
    t = torch.as_tensor(_labels(targets))
    if p.shape != t.shape:
        raise ValueError(f"preds and targets differ in length: {p.numel()} vs {t.numel()}")
    if p.numel() == 0:
        return math.nan
    return float(multiclass_f1_score(p, t, num_classes=num_classes, average="macro"))


def liveness_metrics(
    embeddings: Any,
    preds: Any,
    targets: Any,
    num_classes: int,
    *,
    knn_k: int = 10,
    inflation: float = 2.0,
    expansion: int = 3,
    sim_atol: float = DEFAULT_SIM_ATOL,
    max_points: int | None = 2048,
    seed: int = 0,
    with_macro_f1: bool = True,
) -> dict[str, float]:
    """Every liveness number of one evaluation, keyed by its metric name (module docstring).

    embeddings: pooled features [n, d] (torch or numpy), the ones the classifier head sees.
    preds: predicted label ids [n] or scores [n, C]; targets: label ids [n]; num_classes: C.
    knn_k, inflation, expansion, sim_atol: the MCL graph and granularity (aegir.eval.mcl.markov_cluster).
    max_points: MCL, spread and mean cosine use a seeded subset of this many rows (their cost is O(n^2)-O(n^3));
        RankMe, variances and the prediction metrics use every row.
    with_macro_f1: False when the loop logs val/macro_f1 itself, so the key is not logged twice.

    Non-finite embeddings (a diverged model) give NaN embedding metrics, which fail their gates (aegir.eval.gates)
    instead of crashing the evaluation. An empty evaluation gives 0 clusters, 0 distinct labels and NaN elsewhere.
    """
    x = _embeddings64(embeddings)
    labels = _labels(preds)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings but {labels.shape[0]} predictions")
    out: dict[str, float] = {
        DISTINCT_PREDS: float(distinct_predictions(labels)),
        TOP1_SHARE: top1_share(labels),
    }
    if with_macro_f1:
        out[MACRO_F1] = macro_f1(labels, targets, num_classes)
    if not np.isfinite(x).all():
        out.update({name: math.nan for name in EMBEDDING_METRICS})
        return out
    sub = x[_subsample(x.shape[0], max_points, seed)]
    clusters = markov_cluster(sub, k=knn_k, inflation=inflation, expansion=expansion, sim_atol=sim_atol)
    var_max, var_median = dimension_variance(x)
    out.update({
        MCL_CLUSTERS: float(clusters.num_clusters),
        SPREAD_RATIO: spread_ratio(sub, max_points=None),
        RANKME: rankme(x),
        RANKME_CENTERED: rankme(x, centered=True),
        MEAN_COSINE: mean_pairwise_cosine(sub, max_points=None),
        DIM_VAR_MAX: var_max,
        DIM_VAR_MEDIAN: var_median,
    })
    return out


def default_liveness_gates(
    *,
    min_clusters: int = MIN_CLUSTERS,
    min_macro_f1: float = MIN_MACRO_F1,
    min_distinct_preds: int = MIN_DISTINCT_PREDS,
    num_classes: int | None = None,
    required: bool | None = None,
) -> dict[str, Any]:
    """Issue 7's liveness gates in the `gates:` format (NAME: {metric, op, value}), verdicts as gate/live_*.

    num_classes caps the distinct-label threshold (a 5-class task cannot show 10 labels). `required` adds the
    spine's `required` flag when given; merge the result into an existing `gates` mapping with `{**gates, **this}`.
    """
    distinct = min(min_distinct_preds, num_classes) if num_classes is not None else min_distinct_preds
    gates: dict[str, Any] = {
        "live_mcl_clusters": {"metric": MCL_CLUSTERS, "op": ">=", "value": float(min_clusters)},
        "live_macro_f1": {"metric": MACRO_F1, "op": ">=", "value": float(min_macro_f1)},
        "live_distinct_preds": {"metric": DISTINCT_PREDS, "op": ">=", "value": float(distinct)},
    }
    if required is not None:
        gates["required"] = bool(required)
    return gates

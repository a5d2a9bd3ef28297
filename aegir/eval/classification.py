"""Metrics of single-label classification (CTA / CPA): F1 through torchmetrics, bootstrap CIs, class weights and
a confusion-matrix picture. Pure functions of predictions and targets; aegir/loops/classify.py only calls them.

Names (docs/metrics.md, val/*): ``<split>/macro_f1``, ``<split>/micro_f1`` (= accuracy for single-label data),
``<split>/distinct_preds``, ``<split>/f1/<label>`` (per class, final summary only).

Macro F1 follows torchmetrics' ``MulticlassF1Score(average="macro")``: a class that is neither predicted nor present
in the targets is left out of the mean (so a 20-label validation split is not scored over all 87 labels), and a
class that is present but never predicted counts as 0 -- which is what a collapsed classifier is punished by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_f1_score

CLASS_WEIGHTINGS: tuple[str, ...] = ("none", "balanced", "sqrt")


def _as_long(x: Any) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu().long().reshape(-1)


def classification_metrics(preds: Any, targets: Any, num_classes: int, prefix: str = "val/") -> dict[str, float]:
    """Macro / micro F1 (torchmetrics) and the number of distinct predicted labels, keyed `<prefix><name>`."""
    p, t = _as_long(preds), _as_long(targets)
    if p.shape != t.shape:
        raise ValueError(f"preds and targets differ in length: {p.numel()} vs {t.numel()}")
    if p.numel() == 0:
        return {f"{prefix}macro_f1": math.nan, f"{prefix}micro_f1": math.nan, f"{prefix}distinct_preds": 0.0}
    return {
        f"{prefix}macro_f1": float(multiclass_f1_score(p, t, num_classes=num_classes, average="macro")),
        f"{prefix}micro_f1": float(multiclass_f1_score(p, t, num_classes=num_classes, average="micro")),
        f"{prefix}distinct_preds": float(torch.unique(p).numel()),
    }


def per_class_f1(preds: Any, targets: Any, labels: Sequence[str]) -> dict[str, float]:
    """F1 of every label that occurs in the targets or the predictions (the others have no F1 to speak of)."""
    p, t = _as_long(preds), _as_long(targets)
    if p.numel() == 0:
        return {}
    scores = multiclass_f1_score(p, t, num_classes=len(labels), average=None)
    seen = set(torch.unique(p).tolist()) | set(torch.unique(t).tolist())
    return {labels[i]: float(scores[i]) for i in sorted(seen)}


def _macro_micro_from_confusion(cm: np.ndarray) -> tuple[float, float]:
    """(macro F1, micro F1) of a confusion matrix [..., C, C] (rows = target, cols = prediction), batched."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    denom = support + predicted  # 2tp + fp + fn
    present = denom > 0
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=present)
    macro = f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    micro = tp.sum(axis=-1) / np.maximum(cm.sum(axis=(-2, -1)), 1)
    return macro, micro  # type: ignore[return-value]


def bootstrap_f1(preds: Any, targets: Any, num_classes: int, *, n_boot: int = 500, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Percentile-bootstrap 95% CIs of macro and micro F1 over the evaluated examples (resampled with replacement).

    Returns {"macro_f1": {mean, std, n, ci95, low, high}, "micro_f1": {...}}: `mean` is the point estimate on the
    full sample (so it equals the logged metric), `ci95` half the width of the percentile interval, `n` the number
    of examples. The spread says how much of a difference between runs the fixed evaluation set can resolve.
    """
    p, t = _as_long(preds).numpy(), _as_long(targets).numpy()
    n = p.size
    if n == 0:
        empty = {"mean": math.nan, "std": math.nan, "n": 0, "ci95": math.nan, "low": math.nan, "high": math.nan}
        return {"macro_f1": dict(empty), "micro_f1": dict(empty)}
    cells = t * num_classes + p
    full = np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    point_macro, point_micro = _macro_micro_from_confusion(full)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    offsets = np.arange(n_boot)[:, None] * num_classes * num_classes
    counts = np.bincount((cells[draws] + offsets).ravel(), minlength=n_boot * num_classes * num_classes)
    macro, micro = _macro_micro_from_confusion(counts.reshape(n_boot, num_classes, num_classes))
    alpha = (1.0 - confidence) / 2.0
    out = {}
    for name, point, samples in (("macro_f1", point_macro, macro), ("micro_f1", point_micro, micro)):
        low, high = np.quantile(samples, [alpha, 1.0 - alpha])
        out[name] = {"mean": float(point), "std": float(samples.std(ddof=1)) if n_boot > 1 else math.nan, "n": n,
                     "ci95": float(high - low) / 2.0, "low": float(low), "high": float(high)}
    return out


def class_weights(counts: Sequence[int], mode: str) -> Tensor | None:
    """Cross-entropy class weights from training label counts: None (plain CE), `balanced` (n / (C_seen * n_c),
    the sklearn convention) or `sqrt` (1 / sqrt(n_c), rescaled to mean 1 over the seen classes). Classes without
    training examples get weight 0 (they never occur as targets)."""
    if mode not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, got {mode!r}")
    if mode == "none":
        return None
    c = torch.as_tensor(list(counts), dtype=torch.float64)
    seen = c > 0
    if not bool(seen.any()):
        raise ValueError("no training examples to weight")
    w = torch.zeros_like(c)
    if mode == "balanced":
        w[seen] = c.sum() / (int(seen.sum()) * c[seen])
    else:
        w[seen] = c[seen].rsqrt()
        w[seen] = w[seen] / w[seen].mean()
    return w.float()


def confusion_matrix(preds: Any, targets: Any, num_classes: int) -> Tensor:
    """Counts [C, C], rows = target, columns = prediction (torchmetrics)."""
    return multiclass_confusion_matrix(_as_long(preds), _as_long(targets), num_classes=num_classes).long()


def confusion_image(cm: Tensor, cell: int = 4) -> Tensor:
    """A picture of a confusion matrix for TensorBoard's add_image: [3, C*cell, C*cell] floats in [0, 1].

    Each row is normalised by its support (white = 0, dark blue = the whole row), so a collapsed classifier shows as
    one dark column and a good one as a dark diagonal. Rows of classes absent from the targets are light grey.
    Drawn with torch alone (no matplotlib dependency)."""
    cm = cm.double()
    support = cm.sum(dim=1, keepdim=True)
    frac = torch.where(support > 0, cm / support.clamp(min=1), torch.zeros_like(cm))
    white = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    blue = torch.tensor([0.03, 0.19, 0.42], dtype=torch.float64)
    rgb = white + frac.unsqueeze(-1) * (blue - white)  # [C, C, 3]
    rgb[(support.squeeze(1) == 0)] = torch.tensor([0.9, 0.9, 0.9], dtype=torch.float64)
    rgb = rgb.repeat_interleave(cell, dim=0).repeat_interleave(cell, dim=1)
    return rgb.permute(2, 0, 1).float().contiguous()


def most_confused(cm: Tensor, k: int) -> list[int]:
    """The k classes with the most off-diagonal mass (true as one class, predicted as another, or the reverse),
    in class order; every class when there are at most k."""
    n = cm.shape[0]
    if n <= k:
        return list(range(n))
    off = cm.double().clone()
    off.fill_diagonal_(0)
    mass = off.sum(dim=0) + off.sum(dim=1)
    order = sorted(range(n), key=lambda i: (-float(mass[i]), i))[:k]
    return sorted(order)


def confusion_figure(cm: Tensor, labels: Sequence[str], top_k: int = 15, cell: int = 30) -> Tensor:
    """A labelled confusion matrix for TensorBoard's add_image ([3, H, W] floats in [0, 1]): the `top_k` most
    confused classes (all when there are fewer), rows = true label, columns = predicted label, each cell shaded by
    its share of the true label's whole row and showing its count, with the labels written out. Drawn with Pillow
    (TensorBoard's own dependency)."""
    from PIL import Image, ImageDraw, ImageFont

    chosen = most_confused(cm, top_k)
    counts = cm.long()
    support = counts.sum(dim=1)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    names = [str(labels[i]) if i < len(labels) else str(i) for i in chosen]
    names = [n if len(n) <= 32 else n[:31] + "…" for n in names]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max([int(probe.textlength(n, font=font)) for n in names] + [40]) + 10
    k = len(chosen)
    title = (f"confusion: rows = true, columns = predicted (row share); top {k} of {cm.shape[0]} classes by "
             f"confusion" if k < cm.shape[0] else "confusion: rows = true, columns = predicted (row share)")
    title_h = 24
    width = max(text_w + k * cell + 10, int(probe.textlength(title, font=font)) + 20)
    height = title_h + text_w + k * cell + 10
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 5), title, fill="black", font=font)
    top, left = title_h + text_w, text_w
    for col, name in enumerate(names):  # column labels, rotated to read bottom-up
        strip = Image.new("RGB", (text_w, cell), "white")
        ImageDraw.Draw(strip).text((4, cell // 2 - 7), name, fill="black", font=font)
        strip = strip.rotate(90, expand=True)
        image.paste(strip, (left + col * cell, title_h))
    for row, (i, name) in enumerate(zip(chosen, names)):
        draw.text((4, top + row * cell + cell // 2 - 7), name, fill="black", font=font)
        for col, j in enumerate(chosen):
            n = int(counts[i, j])
            share = n / int(support[i]) if int(support[i]) else 0.0
            shade = tuple(int(255 + share * (c - 255)) for c in (8, 48, 107))
            box = (left + col * cell, top + row * cell, left + (col + 1) * cell - 1, top + (row + 1) * cell - 1)
            draw.rectangle(box, fill=shade if int(support[i]) else (230, 230, 230), outline=(200, 200, 200))
            if n:
                draw.text((box[0] + 3, box[1] + cell // 2 - 7), str(n), font=font,
                          fill="white" if share > 0.5 else "black")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def per_class_table(scores: dict[str, float], support: dict[str, int], predicted: dict[str, int]) -> str:
    """Markdown table of per-label F1 with its support and prediction count (TensorBoard text, worst first)."""
    lines = ["| label | F1 | support | predicted |", "|---|---|---|---|"]
    for label in sorted(scores, key=lambda name: (scores[name], name)):
        lines.append(f"| {label} | {scores[label]:.3f} | {support.get(label, 0)} | {predicted.get(label, 0)} |")
    return "\n".join(lines)


def evaluation_metrics(preds: Any, targets: Any, embeddings: Any, num_classes: int, *, prefix: str = "val/",
                       loss: float | None = None, liveness: dict[str, Any] | None = None) -> dict[str, float]:
    """Everything one evaluation of a classifier logs: `<prefix>macro_f1`, `micro_f1`, `distinct_preds` (and
    `<prefix>loss` when given), plus the collapse diagnostics `live/*` of the pooled embeddings when `liveness`
    holds the MCL settings (knn_k, inflation, expansion, max_points; aegir.eval.collapse.liveness_metrics).

    The liveness gate's metrics are then all in one dict: val/macro_f1, live/mcl_clusters, live/distinct_preds.
    """
    from aegir.eval.collapse import liveness_metrics

    out = classification_metrics(preds, targets, num_classes, prefix=prefix)
    if loss is not None:
        out[f"{prefix}loss"] = float(loss)
    if liveness is not None:
        settings = {k: liveness[k] for k in ("knn_k", "inflation", "expansion", "max_points") if k in liveness}
        out.update(liveness_metrics(embeddings, preds, targets, num_classes, seed=0, with_macro_f1=False,
                                    **settings))
    return out

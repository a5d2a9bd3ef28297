"""The observatory's pictures (matplotlib, Agg backend): each function saves a PNG and returns it as an HWC uint8
array for TensorBoard. Sizes and colours are fixed so the same numbers always give the same picture."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 80
RADAR_AXES = 24  # more labels than this around a 5-inch radar overlap

def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig: Any, path: Path) -> np.ndarray:
    """Render once; the same pixels go to the PNG and to TensorBoard."""
    from PIL import Image

    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(DPI)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    Image.fromarray(image).save(path, format="PNG")
    return image


def drift_heatmap(steps: Sequence[int], layers: Sequence[str], values: np.ndarray, path: Path,
                  title: str = "relative drift from init") -> np.ndarray:
    """Layer (rows) x snapshot step (columns) heatmap of log10 `values` [layers, steps] (NaN and 0 drawn blank):
    layers initialised near zero drift by orders of magnitude more than the rest, so a linear scale hides them."""
    plt = _plt()
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(values > 0, np.log10(values), np.nan)
    title = f"log10 {title}"
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(steps) + 2.5), max(2.5, 0.28 * len(layers) + 1.2)))
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=90, fontsize=7)
    ax.set_yticks(range(len(layers)), list(layers), fontsize=7)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax)
    return _finish(fig, path)


def _colours(labels: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    plt = _plt()
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return names, {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def scatter_map(points: np.ndarray, skills: Sequence[str], path: Path, title: str) -> np.ndarray:
    """2-D map of the probes coloured by skill; with many skills (CTA label families) the legend goes beside the
    map, in columns of 25, so it never covers the points."""
    plt = _plt()
    names, colour = _colours(skills)
    columns = math.ceil(len(names) / 25)
    fig, ax = plt.subplots(figsize=(5.0 + (1.9 * columns if len(names) > 10 else 0.0), 4.2))
    skills_arr = np.asarray(skills)
    for name in names:
        sel = skills_arr == name
        ax.scatter(points[sel, 0], points[sel, 1], s=10, color=colour[name], label=name, alpha=0.8)
    ax.set_title(title, fontsize=9)
    if len(names) > 10:
        ax.legend(fontsize=5, markerscale=1.0, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=columns)
    else:
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    return _finish(fig, path)


def reliability_diagram(bins: Sequence[Mapping[str, float]], ece: float, mce: float, path: Path,
                        title: str) -> np.ndarray:
    """Accuracy vs confidence per equal-width bin, with the diagonal and the bin counts."""
    plt = _plt()
    n = max(len(bins), 1)
    centres = (np.arange(n) + 0.5) / n
    acc = np.array([b["acc"] if b["count"] else 0.0 for b in bins]) if bins else np.zeros(1)
    conf = np.array([b["conf"] if b["count"] else math.nan for b in bins]) if bins else np.zeros(1)
    counts = np.array([b["count"] for b in bins]) if bins else np.zeros(1)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.6, 5.0), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.bar(centres, acc, width=1.0 / n, edgecolor="black", color="#4c72b0", label="accuracy")
    ax.scatter(conf, acc, color="#dd8452", s=12, zorder=3, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {ece:.3f}  MCE {mce:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    axc.bar(centres, counts, width=1.0 / n, color="grey")
    axc.set_xlim(0, 1)
    axc.set_xlabel("confidence")
    axc.set_ylabel("count")
    return _finish(fig, path)


def trajectory_heatmap(steps: Sequence[int], values: np.ndarray, path: Path, title: str) -> np.ndarray:
    """Answer token (x) x snapshot step (y) of mean log-probs [steps, tokens]; at most 12 inches wide, so a
    300-token answer (an ontology composition) is squeezed rather than drawn thousands of pixels wide."""
    plt = _plt()
    width = min(12.0, max(4.0, 0.25 * values.shape[1] + 2.0))
    fig, ax = plt.subplots(figsize=(width, max(2.5, 0.3 * len(steps) + 1.2)))
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="magma", vmin=min(-8.0, float(
        np.nanmin(values)) if np.isfinite(values).any() else -8.0), vmax=0.0, interpolation="nearest")
    ax.set_yticks(range(len(steps)), [str(s) for s in steps], fontsize=7)
    ax.set_xlabel("answer token")
    ax.set_ylabel("step")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="log-prob")
    return _finish(fig, path)


def radar(skills: Sequence[str], current: Mapping[str, float], base: Mapping[str, float] | None, path: Path,
          title: str) -> np.ndarray:
    """Per-skill scores as a polygon, the base (step 0) polygon underneath; at most `RADAR_AXES` axes, those that
    moved most since the base (skills.jsonl keeps every score)."""
    from aegir.observe.dynamics_math import most_moved

    plt = _plt()
    if len(skills) > RADAR_AXES:
        title = f"{title}\n({RADAR_AXES} of {len(skills)} skills: those that moved most since step 0)"
        skills = most_moved(skills, current, base, RADAR_AXES)
    angles = np.linspace(0, 2 * math.pi, max(len(skills), 1), endpoint=False).tolist()
    fig = plt.figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot(111, polar=True)

    def polygon(scores: Mapping[str, float], colour: str, label: str) -> None:
        values = [float(scores.get(s, 0.0) or 0.0) for s in skills]
        ax.plot(angles + angles[:1], values + values[:1], color=colour, label=label)
        ax.fill(angles + angles[:1], values + values[:1], color=colour, alpha=0.2)

    if base is not None:
        polygon(base, "#999999", "step 0")
    polygon(current, "#c44e52", "now")
    ax.set_xticks(angles, list(skills), fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.15, -0.05))
    return _finish(fig, path)


def gif(frames: Sequence[Path], path: Path, duration_ms: int = 700) -> None:
    """An animated GIF of PNG frames (Pillow, which matplotlib depends on)."""
    from PIL import Image

    images = [Image.open(f).convert("RGB") for f in frames]
    if not images:
        return
    size = images[0].size
    images = [im if im.size == size else im.resize(size) for im in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)

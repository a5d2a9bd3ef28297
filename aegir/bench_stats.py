"""How the benchmarks measure and print: repeated, interleaved timings with their spread, and one machine-readable
line per figure (what `make bench` collects into bench.md)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence


def emit(**fields: object) -> None:
    """One machine-readable line: key=value pairs separated by spaces; floats with 4 significant digits."""
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()), flush=True)


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated timings, and the relative spread (max - min) / median: a figure from one
    sample on a shared machine is not a figure."""
    median = statistics.median(samples)
    return {"median": median, "min": min(samples), "max": max(samples),
            "spread": (max(samples) - min(samples)) / median if median else 0.0, "n": float(len(samples))}


def interleaved(sides: dict[str, Callable[[], object]], repeats: int, warmup: int = 0) -> dict[str, list[float]]:
    """Wall time of each side, `repeats` times, the sides alternating (A B A B ...) so a change of load on the
    machine hits both alike; `warmup` untimed rounds first."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(max(repeats, 1)):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def measure(sides: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Each side timed `repeats` times after `warmup` untimed rounds, the sides alternating (A B A B ...) so a change
    of load hits all of them alike -> per side its median, min, max and relative spread (`spread`)."""
    times = interleaved(dict(sides), max(repeats, 1), warmup)
    return {name: spread(samples) for name, samples in times.items()}


def timing_fields(prefix: str, stats: Mapping[str, float]) -> dict[str, float]:
    """`<prefix>_s` (median), `<prefix>_min_s` and `<prefix>_spread` of one side, for `emit`."""
    return {f"{prefix}_s": stats["median"], f"{prefix}_min_s": stats["min"], f"{prefix}_spread": stats["spread"]}

"""The corpus-arm comparison of a multirun's seed aggregate: per arm the mean over seeds of every instrument metric,
the paired difference by seed between arms (full − no_ontology, full − no_schema) with a paired t CI and p, and the
verdicts of `aggregate_gates` (declared in conf/config.yaml like `gates`, evaluated by aegir/eval/gates.py).

Why paired: the arms of one seed share the model initialisation, the batch order and the eval instrument, so the
per-seed difference removes the seed-to-seed spread that an unpaired comparison of two 3-seed means keeps.

Written by `aegir.observe.aggregate` when its runs differ by `arm` (and by nothing else but the seed): a section of
aggregate.md, `arms.json` (machine-readable: the metrics dict and the verdicts) and the `arms` run of aggregate_tb.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from aegir.eval.gates import GateVerdict, evaluate_gates, gate_metrics
from aegir.eval.stats import mean_ci
from aegir.rundir import replicate_key

ARMS_JSON = "arms.json"
ARMS_TB_RUN = "arms"
ARM_ORDER = ("full", "no_ontology", "no_schema")
REFERENCE_ARM = "full"
# The metrics compared across arms: the per-arm validation bpb (different bytes per arm, shown for contrast) and
# everything the fixed cross-arm instrument reports.
INSTRUMENT_PREFIXES = ("eval/bpb/", "eval/bpb_heldout/", "eval/relational/", "val/bpb")
_COMPANIONS = ("n", "lower", "upper", "ci95")


@dataclass(frozen=True)
class Paired:
    """Mean of the per-seed differences a − b, its 95% CI (Student t over seeds) and the two-sided paired t p."""

    mean: float
    lower: float
    upper: float
    p: float
    n: int


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float]) -> Paired:
    """a − b over the seeds both have. One seed gives an infinite CI and p = NaN; identical differences (std 0)
    give a zero-width CI and p = 0 when the mean is not 0 (scipy's limit)."""
    seeds = [s for s in a if s in b]
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    stat = mean_ci(diffs)
    if stat.n < 2:
        return Paired(stat.mean, -math.inf, math.inf, math.nan, stat.n)
    if stat.std == 0.0:
        p = 1.0 if stat.mean == 0.0 else 0.0
    else:
        p = float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)
    return Paired(stat.mean, stat.mean - stat.ci95, stat.mean + stat.ci95, p, stat.n)


def is_instrument_metric(name: str) -> bool:
    return name.startswith(INSTRUMENT_PREFIXES) and name.rsplit("/", 1)[-1] not in _COMPANIONS


def arm_metrics(by_arm: Mapping[str, Mapping[Any, Mapping[str, float]]]) -> dict[str, float]:
    """`by_arm[arm][seed][metric]` -> the aggregate's metrics: `arm/<arm>/<m>` (mean over seeds, `/lower`, `/upper`,
    `/n`) and `paired/<ref>-<arm>/<m>` (`/lower`, `/upper`, `/p`, `/n`) for every other arm against `full`."""
    out: dict[str, float] = {}
    names = sorted({m for seeds in by_arm.values() for values in seeds.values() for m in values
                    if is_instrument_metric(m)})
    for arm, seeds in by_arm.items():
        for metric in names:
            stat = mean_ci([v[metric] for v in seeds.values() if _finite(v.get(metric))])
            out.update({f"arm/{arm}/{metric}": stat.mean, f"arm/{arm}/{metric}/lower": stat.mean - stat.ci95,
                        f"arm/{arm}/{metric}/upper": stat.mean + stat.ci95, f"arm/{arm}/{metric}/n": float(stat.n)})
    if REFERENCE_ARM in by_arm:
        ref = by_arm[REFERENCE_ARM]
        for arm in by_arm:
            if arm == REFERENCE_ARM:
                continue
            for metric in names:
                pair = paired_difference({s: v[metric] for s, v in ref.items() if _finite(v.get(metric))},
                                         {s: v[metric] for s, v in by_arm[arm].items() if _finite(v.get(metric))})
                key = f"paired/{REFERENCE_ARM}-{arm}/{metric}"
                out.update({key: pair.mean, f"{key}/lower": pair.lower, f"{key}/upper": pair.upper,
                            f"{key}/p": pair.p, f"{key}/n": float(pair.n)})
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass
class ArmComparison:
    """One set of runs that differ only by arm and seed: what was compared, the metrics and the gate verdicts."""

    label: str
    by_arm: dict[str, dict[Any, dict[str, float]]]
    metrics: dict[str, float]
    verdicts: dict[str, GateVerdict]
    instrument_hashes: dict[str, list[str]]  # eval-set / probe SHA-256 seen across the runs (one each if fixed)


def compare_arms(runs: Sequence[Any]) -> list[ArmComparison]:
    """Finished runs (aegir.observe.aggregate.RunRecord) grouped by their configuration without `arm`, kept where
    at least two arms are present; each with its arm metrics and `aggregate_gates` verdicts."""
    by_key: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        if run.status == "finished" and run.metadata.get("arm") in ARM_ORDER:
            config = {k: v for k, v in run.config.items() if k not in ("arm", "aggregate_gates")}
            by_key[replicate_key(config)].append(run)
    comparisons = []
    for members in by_key.values():
        by_arm: dict[str, dict[Any, dict[str, float]]] = defaultdict(dict)
        for run in members:
            by_arm[str(run.metadata["arm"])][run.seed] = dict((run.summary or {}).get("metrics") or {})
        if len(by_arm) < 2:
            continue
        ordered = {arm: by_arm[arm] for arm in ARM_ORDER if arm in by_arm}
        metrics = arm_metrics(ordered)
        metrics["runs/finished"] = float(len(members))
        gates = members[0].config.get("aggregate_gates") or {}
        hashes: dict[str, set[str]] = defaultdict(set)
        for run in members:
            data = run.metadata.get("data") or {}
            for part in ("eval_windows", "eval_windows_heldout", "probes"):
                if isinstance(data.get(part), dict):
                    hashes[part].add(str(data[part].get("sha256")))
        comparisons.append(ArmComparison(str(members[0].config.get("name") or "runs"), ordered, metrics,
                                         evaluate_gates(gates, metrics), {k: sorted(v) for k, v in hashes.items()}))
    return comparisons


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _cell(metrics: Mapping[str, float], key: str) -> str:
    mean, lower, upper = metrics.get(key), metrics.get(f"{key}/lower"), metrics.get(f"{key}/upper")
    if mean is None:
        return "—"
    return f"{_fmt(mean)} [{_fmt(lower)}, {_fmt(upper)}]"


def markdown_section(comparison: ArmComparison, level: int = 2) -> str:
    """Per metric: each arm's mean over seeds [95% CI], then each paired difference [CI] and p; then the gates."""
    h = "#" * level
    arms = list(comparison.by_arm)
    others = [a for a in arms if a != REFERENCE_ARM]
    seeds = {arm: sorted(seeds, key=str) for arm, seeds in comparison.by_arm.items()}
    names = sorted({k.split("/", 2)[2] for k in comparison.metrics if k.startswith("arm/")
                    and is_instrument_metric(k.split("/", 2)[2])})
    lines = [f"\n{h} Arms: {comparison.label}\n",
             "Runs differing only by corpus arm; seeds per arm: "
             + "; ".join(f"{arm} {', '.join(str(s) for s in seeds[arm])}" for arm in arms)
             + ". Per arm: mean over seeds [95% CI, Student t]. Paired: mean of the per-seed differences "
             "[95% CI] and the paired t p.\n",
             "Instrument hashes across these runs (one value each = every arm scored on the same bytes): "
             + "; ".join(f"{k} {', '.join(h[:12] for h in v)}" for k, v in comparison.instrument_hashes.items())
             + "\n",
             "| metric | " + " | ".join(arms) + " | " + " | ".join(f"{REFERENCE_ARM} − {o} | p" for o in others) + " |",
             "|---|" + "---|" * (len(arms) + 2 * len(others))]
    for name in names:
        cells = [_cell(comparison.metrics, f"arm/{arm}/{name}") for arm in arms]
        for other in others:
            key = f"paired/{REFERENCE_ARM}-{other}/{name}"
            cells += [_cell(comparison.metrics, key), _fmt(comparison.metrics.get(f"{key}/p"), 3)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if comparison.verdicts:
        lines += [f"\n{h}# Gates ({sum(v.passed for v in comparison.verdicts.values())}/{len(comparison.verdicts)} "
                  "pass)\n", "| gate | verdict | observed | check |", "|---|---|---|---|"]
        for name, verdict in comparison.verdicts.items():
            lines.append(f"| {name} | {'PASS' if verdict.passed else 'FAIL'} | {_fmt(verdict.observed)} | "
                         f"{verdict.metric} {verdict.op} {verdict.threshold:g} |")
    return "\n".join(lines) + "\n"


def write_arms(comparisons: Sequence[ArmComparison], root: Path, tb_dir: Path) -> Path | None:
    """arms.json in `root` and the `arms` TensorBoard run (gate/<name> and the paired differences as scalars, the
    markdown as text) under `tb_dir`; None when no runs differ by arm."""
    if not comparisons:
        return None
    from torch.utils.tensorboard import SummaryWriter

    payload = [{"label": c.label, "arms": {a: sorted(s, key=str) for a, s in c.by_arm.items()},
                "instrument_hashes": c.instrument_hashes,
                "metrics": {k: v for k, v in c.metrics.items() if _finite(v)},
                "gates": {n: v.as_dict() for n, v in c.verdicts.items()},
                "gates_passed": all(v.passed for v in c.verdicts.values())} for c in comparisons]
    path = root / ARMS_JSON
    path.write_text(json.dumps(payload, indent=2, sort_keys=False), encoding="utf-8")
    for index, comparison in enumerate(comparisons):
        name = ARMS_TB_RUN if len(comparisons) == 1 else f"{ARMS_TB_RUN}_{index}"
        with SummaryWriter(log_dir=str(tb_dir / name)) as writer:
            for key, value in gate_metrics(comparison.verdicts).items():
                writer.add_scalar(key, value, 0)
            for key, value in comparison.metrics.items():
                if key.startswith("paired/") and _finite(value):
                    writer.add_scalar(key, value, 0)
            writer.add_text("arms", markdown_section(comparison), 0)
    return path

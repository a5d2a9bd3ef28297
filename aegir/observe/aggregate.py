"""Seed aggregation over run directories: per configuration (all keys but `seed`), the mean, std, n and 95% CI
(Student t) of every final metric, as markdown and CSV, the V4.2 seed table, and a TensorBoard run whose margin
charts show the mean ± std across seeds over steps.

Reads only the run directory contract (aegir.rundir), so it works on finished, failed and running runs alike
(only finished runs enter the statistics; the others are listed with their status). Runs automatically at the end
of a Hydra multirun (the `hydra.callbacks.aggregate` entry of conf/hydra/default.yaml) and by hand:

    python -m aegir.observe.aggregate outputs/multiruns/<date>/<sweep>
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from aegir.eval.stats import mean_ci
from aegir.rundir import METADATA, REPLICATE_LOCAL_KEYS, STAGES, SUMMARY, read_history, read_json, replicate_key

log = logging.getLogger("aegir")
AGGREGATE_MD = "aggregate.md"
AGGREGATE_CSV = "aggregate.csv"
AGGREGATE_TB = "aggregate_tb"


@dataclass
class RunRecord:
    path: Path
    metadata: dict[str, Any]
    summary: dict[str, Any] | None

    @property
    def status(self) -> str:
        if self.summary is not None and self.summary.get("status") == "finished":
            return "finished"
        return str(self.metadata.get("status", "unknown"))

    @property
    def seed(self) -> Any:
        return self.metadata.get("seed")

    @property
    def config(self) -> dict[str, Any]:
        return self.metadata.get("config") or {}


def find_runs(roots: Iterable[Path]) -> list[RunRecord]:
    """Every run directory (a metadata.json not inside a stage sub-directory) under the given roots, sorted."""
    runs = []
    for root in roots:
        for meta in sorted(Path(root).rglob(METADATA)):
            if STAGES in meta.relative_to(root).parts[:-2]:
                continue
            try:
                metadata = read_json(meta)
            except (OSError, json.JSONDecodeError):
                continue  # a directory being written right now
            summary_path = meta.parent / SUMMARY
            summary = read_json(summary_path) if summary_path.is_file() else None
            runs.append(RunRecord(meta.parent, metadata, summary))
    return runs


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def configuration_key(run: RunRecord) -> str:
    """Hash of the resolved config without run-local keys: replicates over seeds share it."""
    return replicate_key(run.config)


def differing_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Config keys (flattened, run-local keys excluded) whose values differ between the given runs."""
    flats = [flatten({k: v for k, v in r.config.items() if k not in REPLICATE_LOCAL_KEYS}) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]


@dataclass
class Group:
    key: str
    label: str
    runs: list[RunRecord]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "finished"]

    def metric_names(self) -> list[str]:
        names: set[str] = set()
        for run in self.finished:
            names.update(k for k, v in (run.summary or {}).get("metrics", {}).items() if _is_number(v))
        return sorted(names)

    def stats(self, metric: str) -> dict[str, Any]:
        values = [float(r.summary["metrics"][metric]) for r in self.finished  # type: ignore[index]
                  if _is_number((r.summary or {}).get("metrics", {}).get(metric))]
        return mean_ci(values).as_dict()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _seed_order(run: RunRecord) -> tuple[int, float, str, str]:
    """Numeric seeds in numeric order (42 before 123), anything else after them as text."""
    seed = run.seed
    numeric = isinstance(seed, (int, float)) and not isinstance(seed, bool)
    return (0 if numeric else 1, float(seed) if numeric else 0.0, str(seed), str(run.path))


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Replicates grouped by configuration; each group labelled by the keys that set it apart from the others."""
    by_key: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_key[configuration_key(run)].append(run)
    varying = differing_keys([group[0] for group in by_key.values()]) if len(by_key) > 1 else []
    groups = []
    for key, members in by_key.items():
        flat = flatten(members[0].config)
        label = ",".join(f"{k}={flat.get(k)}" for k in varying) or str(members[0].config.get("name", key))
        groups.append(Group(key, label, sorted(members, key=_seed_order)))
    return sorted(groups, key=lambda g: g.label)


def _fmt(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4f}"


def markdown_report(groups: Sequence[Group]) -> str:
    """Per configuration: the seed table (one row per metric, one column per seed, mean ± 95% CI) and run status."""
    out = io.StringIO()
    out.write("# Seed aggregate\n\nMean ± 95% CI (Student t over seeds); only finished runs enter the statistics.\n")
    for group in groups:
        out.write(f"\n## {group.label}\n\nconfiguration `{group.key}` — {len(group.finished)}/{len(group.runs)} "
                  f"runs finished\n\n")
        task_rows = _task_rows(group.metric_names())
        if not group.finished:  # all failed, pruned or still running: list them, no empty table
            out.write("No finished run yet: nothing to aggregate.\n")
        else:
            if task_rows:  # the V4.2 seed table: per-task eval reward
                out.write(_seed_table("Task", task_rows, group))
                out.write("\nAll final metrics:\n\n")
            out.write(_seed_table("Metric", [(m, m) for m in group.metric_names()], group))
        unfinished = [r for r in group.runs if r.status != "finished"]
        for run in unfinished:
            out.write(f"\n- seed {run.seed}: **{run.status}** — {run.path}\n")
    return out.getvalue()


def _seed_table(head: str, rows: Sequence[tuple[str, str]], group: Group) -> str:
    """`| head | Seed s … | Mean ± 95% CI |` with one (label, metric) row each, over the group's finished runs."""
    seeds = [r.seed for r in group.finished]
    lines = ["| " + head + " | " + " | ".join(f"Seed {s}" for s in seeds) + " | Mean ± 95% CI |",
             "|---|" + "---|" * len(seeds) + "---|"]
    for label, metric in rows:
        cells = [_fmt((r.summary or {}).get("metrics", {}).get(metric)) for r in group.finished]
        stat = group.stats(metric)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_fmt(stat['mean'])} ± {_fmt(stat['ci95'])} |")
    return "\n".join(lines) + "\n"


def _task_rows(metrics: Sequence[str]) -> list[tuple[str, str]]:
    """(task, metric) for every `eval/<task>/reward`, then ("all", "eval/reward"); [] without per-task rewards."""
    rows = [(m.split("/")[1], m) for m in metrics if m.count("/") == 2 and m.startswith("eval/")
            and m.endswith("/reward")]
    if rows and "eval/reward" in metrics:
        rows.append(("all", "eval/reward"))
    return rows


def csv_report(groups: Sequence[Group]) -> str:
    """One row per (configuration, metric): group, label, metric, n, mean, std, ci95, then per-seed values."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["configuration", "label", "metric", "n", "mean", "std", "ci95", "seeds", "values"])
    for group in groups:
        for metric in group.metric_names():
            stat = group.stats(metric)
            values = [(r.summary or {}).get("metrics", {}).get(metric) for r in group.finished]
            writer.writerow([group.key, group.label, metric, stat["n"], stat["mean"], stat["std"], stat["ci95"],
                             " ".join(str(r.seed) for r in group.finished), " ".join(str(v) for v in values)])
    return out.getvalue()


def write_tensorboard_aggregate(groups: Sequence[Group], out_dir: Path) -> list[str]:
    """One TensorBoard run (`out_dir`) with agg/<label>/<metric>/{mean,lower,upper} over steps (mean ± std across
    seeds at each step every seed logged) and a custom-scalars layout of margin charts. Returns the metrics."""
    from torch.utils.tensorboard import SummaryWriter

    layout: dict[str, dict[str, list[Any]]] = {}
    written: list[str] = []
    with SummaryWriter(log_dir=str(out_dir)) as writer:
        for group in groups:
            histories = [read_history(r.path / "history.jsonl") for r in group.finished]
            if len(histories) < 1:
                continue
            shared = set.intersection(*(set(h) for h in histories))
            for metric in sorted(m for m in shared if not m.startswith("perf/")):
                per_step: dict[int, list[float]] = defaultdict(list)
                for history in histories:
                    for step, value in history[metric]:
                        per_step[step].append(value)
                tag = f"agg/{group.label}/{metric}"
                for step in sorted(per_step):
                    values = per_step[step]
                    if len(values) != len(histories):
                        continue  # a step not every seed reached
                    stat = mean_ci(values)
                    std = 0.0 if len(values) == 1 else stat.std
                    writer.add_scalar(f"{tag}/mean", stat.mean, step)
                    writer.add_scalar(f"{tag}/lower", stat.mean - std, step)
                    writer.add_scalar(f"{tag}/upper", stat.mean + std, step)
                layout.setdefault(metric, {})[f"{group.label} (mean ± std over {len(histories)} seeds)"] = [
                    "Margin", [f"{tag}/mean", f"{tag}/lower", f"{tag}/upper"]]
                written.append(tag)
        writer.add_custom_scalars({f"Seed aggregate: {metric}": charts for metric, charts in layout.items()})
    return written


def aggregate(root: Path) -> dict[str, Path]:
    """Write aggregate.md, aggregate.csv and aggregate_tb/ into `root` for every run below it."""
    runs = find_runs([root])
    groups = group_runs(runs)
    paths = {"markdown": root / AGGREGATE_MD, "csv": root / AGGREGATE_CSV, "tensorboard": root / AGGREGATE_TB}
    paths["markdown"].write_text(markdown_report(groups), encoding="utf-8")
    paths["csv"].write_text(csv_report(groups), encoding="utf-8")
    write_tensorboard_aggregate(groups, paths["tensorboard"])
    return paths


try:  # the Hydra callback: aggregation when a multirun ends
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a hard dependency; kept importable without it
    _HydraCallback = object  # type: ignore[assignment,misc]


class AggregateSeeds(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback: at the end of a multirun, aggregate its sweep directory and say where the results are."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        root = Path(str(config.hydra.sweep.dir))
        if not root.is_dir():
            return
        paths = aggregate(root)
        print(f"seed aggregate: {paths['markdown']}  (CSV: {paths['csv']})", flush=True)
        print(f"tensorboard --logdir {root}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    root = Path(args[0])
    if not root.is_dir():
        print(f"aegir.aggregate: {root}: no such directory", file=sys.stderr)
        return 2
    if not find_runs([root]):
        print(f"aegir.aggregate: {root}: no run directories (metadata.json) below it", file=sys.stderr)
        return 2
    paths = aggregate(root)
    print(f"seed aggregate: {paths['markdown']}  (CSV: {paths['csv']})")
    print(f"tensorboard --logdir {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

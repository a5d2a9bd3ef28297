"""Seed aggregation over run directories: per configuration (all keys but `seed`), the mean, std, n and 95% CI
(Student t) of every final metric, as markdown and CSV, the V4.2 seed table, and per configuration a TensorBoard
run with the mean across seeds of its headline metrics under the runs' own tag names (it overlays the seeds) and
one Custom Scalars category of mean ± std bands.

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
import os
import re
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from aegir.eval.stats import mean_ci
from aegir.rundir import (HISTORY, METADATA, REPLICATE_LOCAL_KEYS, STAGES, SUMMARY, read_history, read_json_object,
                          replicate_key)

log = logging.getLogger("aegir")
AGGREGATE_MD = "aggregate.md"
AGGREGATE_CSV = "aggregate.csv"
AGGREGATE_TB = "aggregate_tb"
COMPANION_SUFFIXES = ("n", "ci95", "lower", "upper")


@dataclass
class RunRecord:
    path: Path
    metadata: dict[str, Any]
    summary: dict[str, Any] | None
    problem: str | None = None  # why metadata.json / summary.json cannot be read (find_runs)

    @property
    def status(self) -> str:
        if self.problem is not None:
            return f"unreadable: {self.problem}"
        if self.summary is not None and self.summary.get("status") == "finished":
            return "finished"
        return str(self.metadata.get("status", "unknown"))

    @property
    def seed(self) -> Any:
        return self.metadata.get("seed")

    @property
    def config(self) -> dict[str, Any]:
        return self.metadata.get("config") or {}

    @property
    def trial(self) -> dict[str, Any] | None:
        """A sweep trial's `{study, number, params, spec}`, None for other runs."""
        trial = self.metadata.get("trial")
        return trial if isinstance(trial, dict) else None

    @property
    def objective_metric(self) -> str:
        """The metric the run is scored on: summary.json's objective, else the config's (unfinished runs)."""
        metric = ((self.summary or {}).get("objective") or {}).get("metric")
        return str(metric or (self.config.get("objective") or {}).get("metric") or "—")

    @property
    def objective_mode(self) -> str:
        mode = ((self.summary or {}).get("objective") or {}).get("mode")
        return str(mode or (self.config.get("objective") or {}).get("mode") or "min")

    @property
    def task(self) -> str:
        """The task the objective is measured on: a multi-stage run's last stage's task."""
        config = self.config
        stages = self.metadata.get("stages")
        if self.metadata.get("kind") == "multi_stage" and isinstance(stages, list) and stages:
            last, _ = read_json_object(Path(str(stages[-1].get("dir", ""))) / METADATA)
            config = (last or {}).get("config") or config
        task = config.get("task")
        return str(task.get("name", "—")) if isinstance(task, Mapping) else str(task or "—")

    @property
    def collection(self) -> str:
        """What launched the run with its siblings: the sweep study, else the directory it lies in."""
        trial = self.trial
        return f"study {trial.get('study')}" if trial else self.path.parent.name

    def last_reported(self, metric: str) -> tuple[int, float] | None:
        """(step, value) of the last time `metric` was logged (history.jsonl): what a pruned or failed run reached."""
        series = read_history(self.path / HISTORY).get(metric)
        return series[-1] if series else None


def find_runs(roots: Iterable[Path]) -> list[RunRecord]:
    """Every run directory under the given roots, sorted: a directory holding metadata.json, summary.json or
    history.jsonl that is not a stage sub-directory. One whose metadata.json or summary.json cannot be read (torn,
    not JSON, not an object), or that has no metadata.json, is kept with `problem` saying why: tables show it as
    "unreadable: why" rather than crash or silently drop it."""
    runs = []
    for root in roots:
        root = Path(root)
        marks = {METADATA, SUMMARY, HISTORY}  # one walk of the tree, not one per file name
        found = {Path(folder) for folder, _, files in os.walk(root) if marks.intersection(files)}
        for path in sorted(found):
            if STAGES in path.relative_to(root).parts[:-1]:
                continue
            metadata, problem = read_json_object(path / METADATA)
            summary = None
            if (path / SUMMARY).is_file():
                summary, summary_problem = read_json_object(path / SUMMARY)
                problem = problem or summary_problem
            runs.append(RunRecord(path, metadata or {}, summary, problem))
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


def is_companion(metric: str) -> bool:
    """`eval/reward/n`, `/ci95`, `/lower`, `/upper`: statistics *of* a metric, never averaged as metrics."""
    return metric.rsplit("/", 1)[-1] in COMPANION_SUFFIXES and metric.count("/") >= 2


# Override keys that say where or how a run ran, or what every trial of a sweep shares, not what it computes.
_LOCAL_OVERRIDE_PREFIXES = ("seed", "paths.", "hydra.", "resume", "notes", "tags", "trainer.enable_progress_bar",
                            "objective.", "callbacks.progress_bar", "logger.")


def _override_items(run: RunRecord) -> dict[str, str]:
    """The run's `key=value` overrides (`+`/`++` stripped), its trial parameters last, run-local keys left out."""
    items: dict[str, str] = {}
    for text in run.metadata.get("overrides") or []:
        key, sep, value = str(text).lstrip("+~").partition("=")
        if sep and not key.startswith(_LOCAL_OVERRIDE_PREFIXES) and ".objective." not in key:
            items[key] = value
    for key, value in ((run.trial or {}).get("params") or {}).items():
        if not str(key).startswith(("seed", "paths.", "hydra.")):
            items[str(key)] = str(value)
    return items


def value_of(run: RunRecord, key: str) -> str:
    """A parameter's value in this run: its override, else its resolved config value, else —."""
    override = _override_items(run).get(key)
    if override is not None:
        return override
    flat = flatten(run.config)
    bare = key.split(".", 2)[-1] if key.startswith("stages.") else key  # stages.<name>.set.<key>: the stage's key
    bare = bare[len("set."):] if bare.startswith("set.") else bare
    value = flat.get(key, flat.get(bare))
    return "—" if value is None else str(value)


def parameter_columns(runs: Sequence[RunRecord]) -> list[str]:
    """What sets the runs apart, as a reader set it: every swept parameter of a sweep, then the command-line
    overrides whose values differ between the runs (seed excluded: it has its own column). Runs written without
    overrides (by hand, by older versions) fall back to the resolved-config keys that differ."""
    swept: list[str] = []
    for run in runs:
        for key in (run.trial or {}).get("params") or {}:
            if key not in swept and not str(key).startswith("seed"):
                swept.append(str(key))
    overridden: list[str] = []
    for run in runs:
        for key in _override_items(run):
            if key not in swept and key not in overridden:
                overridden.append(key)
    if not swept and not overridden:
        keys = differing_keys(runs) if len(runs) > 1 else []
        return [k for k in keys if not k.startswith(("stages", "gates"))][:8]
    differing = [k for k in overridden if len({value_of(r, k) for r in runs}) > 1]
    return swept + differing


def short_key(key: str, keys: Sequence[str]) -> str:
    """`algo.group_size` -> `group_size` unless another key ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


@dataclass
class Group:
    key: str
    label: str
    runs: list[RunRecord]
    task: str = "—"
    metric: str = "—"
    mode: str = "min"

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "finished"]

    def metric_names(self) -> list[str]:
        """The finished runs' numeric final metrics, without the companions (`/n`, `/ci95`, bands) of a metric."""
        names: set[str] = set()
        for run in self.finished:
            names.update(k for k, v in (run.summary or {}).get("metrics", {}).items()
                         if _is_number(v) and not is_companion(k))
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


def block_key(run: RunRecord) -> tuple[str, str]:
    """(task, objective metric): numbers are only ever compared or averaged inside one block."""
    return run.task, run.objective_metric


def split_blocks(runs: Sequence[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    """Runs by (task, objective metric). A run that does not say its objective (no summary.json, an old config)
    joins the block of a run with the same configuration, else the only block of its task, else its own."""
    blocks: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    unknown = [r for r in runs if r.objective_metric == "—"]
    by_configuration = {configuration_key(r): block_key(r) for r in runs if r.objective_metric != "—"}
    for run in runs:
        if run.objective_metric != "—":
            blocks[block_key(run)].append(run)
    for run in unknown:
        same_task = [key for key in blocks if key[0] == run.task]
        key = by_configuration.get(configuration_key(run)) or (same_task[0] if len(same_task) == 1
                                                               else block_key(run))
        blocks[key].append(run)
    return dict(sorted(blocks.items()))


def _replicate_sets(members: list[RunRecord]) -> list[list[RunRecord]]:
    """Seed replicates are distinct seeds: runs of one configuration that repeat a seed (the same point found by
    two studies, the same multirun launched twice) are split by what launched them, then by occurrence."""
    seeds = [str(r.seed) for r in members]
    if len(set(seeds)) == len(seeds):
        return [members]
    by_collection: dict[str, list[RunRecord]] = defaultdict(list)
    for run in members:
        by_collection[run.collection].append(run)
    sets: list[list[RunRecord]] = []
    for collection_runs in by_collection.values():
        occurrence: list[list[RunRecord]] = []
        for run in sorted(collection_runs, key=lambda r: str(r.path)):
            slot = next((s for s in occurrence if all(str(o.seed) != str(run.seed) for o in s)), None)
            if slot is None:
                occurrence.append([run])
            else:
                slot.append(run)
        sets.extend(occurrence)
    return sets


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Seed replicates grouped per (task, objective metric) block and configuration, each group labelled by the
    name of the experiment and the parameters that set it apart from the other groups of its block."""
    groups: list[Group] = []
    for (task, metric), block in split_blocks(runs).items():
        by_key: dict[str, list[RunRecord]] = defaultdict(list)
        for run in block:
            by_key[configuration_key(run)].append(run)
        parts = [(key, members) for key, members in by_key.items() for members in _replicate_sets(members)]
        by_name: dict[str, list[RunRecord]] = defaultdict(list)  # parameters only tell apart namesakes
        for _, members in parts:
            by_name[_name(members[0])].append(members[0])
        columns = {name: parameter_columns(firsts) if len(firsts) > 1 else [] for name, firsts in by_name.items()}
        block_groups = []
        for key, members in parts:
            first = members[0]
            label = _label(first, columns[_name(first)])
            block_groups.append(Group(key, label, sorted(members, key=_seed_order), task, metric,
                                      first.objective_mode))
        labels = [g.label for g in block_groups]
        for group in block_groups:  # the same label twice (two studies, two launches): say which one
            if labels.count(group.label) > 1:
                group.label = f"{group.label} [{group.runs[0].collection}]"
        groups.extend(sorted(block_groups, key=lambda g: g.label))
    return groups


def _name(run: RunRecord) -> str:
    return str(run.config.get("name") or run.path.name)


def _label(run: RunRecord, columns: Sequence[str], limit: int = 80) -> str:
    """`grpo_toy group_size=4,kl_coef=0.02`: the experiment's name and, among configurations of the same name,
    the parameters that set this one apart (those it does not set, and `experiment=<its name>`, left out); short
    enough for a heading and a TensorBoard run name."""
    name = _name(run)
    values = [(k, value_of(run, k)) for k in columns]
    params = ",".join(f"{short_key(k, columns)}={v}" for k, v in values
                      if v != "—" and not (k.rsplit(".", 1)[-1] == "experiment" and v == name))
    label = f"{name} {params}" if params else name
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _fmt(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4f}"


def markdown_report(groups: Sequence[Group], level: int = 1, block_headings: bool = True) -> str:
    """Per (task, objective) block, per configuration: the seed table (one row per metric, one column per seed,
    mean ± 95% CI) and the status of runs that did not finish. `level` is the heading level of the title; without
    `block_headings` (the caller has its own), the configurations' headings sit one level below the title."""
    h = "#" * level
    g = h + ("##" if block_headings else "#")
    out = io.StringIO()
    out.write(f"{h} Seed aggregate\n\nMean ± 95% CI (Student t over seeds); only finished runs enter the statistics;"
              " a metric's companions (`/n`, `/ci95`) are within-run statistics and are not averaged.\n")
    block: tuple[str, str] | None = None
    for group in groups:
        if block_headings and (group.task, group.metric) != block:
            block = (group.task, group.metric)
            out.write(f"\n{h}# {block_title(group.task, group.metric, group.mode)}\n")
        out.write(f"\n{g} {group.label}\n\nconfiguration `{group.key}` — {len(group.finished)}/{len(group.runs)} "
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
            last = run.last_reported(group.metric)
            reached = f" (last {group.metric} = {last[1]:.4f} at step {last[0]})" if last else ""
            out.write(f"\n- seed {run.seed}: **{run.status}**{reached} — {run.path}\n")
    return out.getvalue()


def block_title(task: str, metric: str, mode: str) -> str:
    return f"task {task} · objective {metric} ({mode})"


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
    """One row per (configuration, metric): group, label, task, objective, metric, n, mean, std, ci95, then the
    per-seed values."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["configuration", "label", "task", "objective", "metric", "n", "mean", "std", "ci95", "seeds",
                     "values"])
    for group in groups:
        for metric in group.metric_names():
            stat = group.stats(metric)
            values = [(r.summary or {}).get("metrics", {}).get(metric) for r in group.finished]
            writer.writerow([group.key, group.label, group.task, group.metric, metric, stat["n"], stat["mean"], stat["std"], stat["ci95"],
                             " ".join(str(r.seed) for r in group.finished), " ".join(str(v) for v in values)])
    return out.getvalue()


# The curves worth a seed band: the objective metric of each group plus these, when every seed logged them.
HEADLINE_METRICS = ("train/loss", "grpo/reward/mean", "eval/reward", "val/loss", "val/bpb", "val/macro_f1")
SEED_BAND = "seed_band"
SEED_AGGREGATE_CATEGORY = "Seed aggregate (mean ± std over seeds)"


def run_name(label: str) -> str:
    """A configuration label as a directory (TensorBoard run) name."""
    return re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", label).strip("_") or "configuration"


def write_tensorboard_aggregate(groups: Sequence[Group], out_dir: Path) -> list[str]:
    """Per configuration with at least two finished seeds, one TensorBoard run `out_dir/<label>` holding the mean
    across seeds of its headline metrics (HEADLINE_METRICS and its objective) under the runs' own tag names, so the
    mean overlays the seeds in the same chart; and `seed_band/<metric>/lower|upper` (mean ∓ std), drawn only in the
    one Custom Scalars category as a band per configuration. Returns the metrics written, `<label>/<metric>`."""
    from torch.utils.tensorboard import SummaryWriter

    written: list[str] = []
    for group in groups:
        histories = [read_history(r.path / HISTORY) for r in group.finished]
        if len(histories) < 2:
            continue  # one seed: its own run already shows it
        shared = set.intersection(*(set(h) for h in histories))
        headline = [m for m in dict.fromkeys((group.metric, *HEADLINE_METRICS)) if m in shared]
        if not headline:
            continue
        layout: dict[str, list[Any]] = {}
        with SummaryWriter(log_dir=str(out_dir / run_name(group.label))) as writer:
            for metric in headline:
                per_step: dict[int, list[float]] = defaultdict(list)
                for history in histories:
                    for step, value in history[metric]:
                        per_step[step].append(value)
                for step in sorted(per_step):
                    values = per_step[step]
                    if len(values) != len(histories):
                        continue  # a step not every seed reached
                    stat = mean_ci(values)
                    writer.add_scalar(metric, stat.mean, step)
                    writer.add_scalar(f"{SEED_BAND}/{metric}/lower", stat.mean - stat.std, step)
                    writer.add_scalar(f"{SEED_BAND}/{metric}/upper", stat.mean + stat.std, step)
                layout[f"{metric} (mean ± std over seeds)"] = [
                    "Margin", [metric, f"{SEED_BAND}/{metric}/lower", f"{SEED_BAND}/{metric}/upper"]]
                written.append(f"{group.label}/{metric}")
            # every aggregate run writes the same category; TensorBoard merges them and drops duplicate charts
            writer.add_custom_scalars({SEED_AGGREGATE_CATEGORY: layout})
    return written


def aggregate(root: Path) -> dict[str, Path]:
    """Write aggregate.md, aggregate.csv and aggregate_tb/ into `root` for every run below it."""
    from aegir.observe.arms import compare_arms, markdown_section, write_arms

    runs = find_runs([root])
    groups = group_runs(runs)
    comparisons = compare_arms(runs)  # runs that differ by corpus arm: paired differences and aggregate_gates
    paths = {"markdown": root / AGGREGATE_MD, "csv": root / AGGREGATE_CSV, "tensorboard": root / AGGREGATE_TB}
    paths["markdown"].write_text(markdown_report(groups) + "".join(markdown_section(c) for c in comparisons),
                                 encoding="utf-8")
    paths["csv"].write_text(csv_report(groups), encoding="utf-8")
    shutil.rmtree(paths["tensorboard"], ignore_errors=True)  # rebuilt, not appended to: no doubled points
    write_tensorboard_aggregate(groups, paths["tensorboard"])
    arms = write_arms(comparisons, root, paths["tensorboard"])
    if arms is not None:
        paths["arms"] = arms
        for comparison in comparisons:
            for name, verdict in comparison.verdicts.items():
                print(f"aggregate gate {name}: {'PASS' if verdict.passed else 'FAIL'} ({verdict.reason})", flush=True)
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
        print(f"python -m aegir.tb {root}   (TensorBoard, runs named by configuration and seed; or: "
              f"tensorboard --logdir {root})", flush=True)


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
    print(f"python -m aegir.tb {root}   (TensorBoard, runs named by configuration and seed; or: "
          f"tensorboard --logdir {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m aegir.report PATH... [--format md|csv] [--diff RUN_A RUN_B]`: tables over run and sweep directories.

Runs below the given paths are split into blocks of one task and one objective metric: numbers are compared and
averaged only inside a block. Per block: a leaderboard (the swept parameters / overrides that set the runs apart,
the objective -- for a pruned or failed run the last value it reported -- and final metrics with their 95% CI,
gate verdicts, status, provenance hashes), the comparison per corpus arm and the seed aggregation per
configuration (seed replicates only: different configurations, or one configuration found by two studies, are
never averaged together). `--diff A B` prints the resolved-config keys that differ between
two runs. It reads only the run directory contract, so failed and still-running runs appear with their status.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from aegir.eval.stats import mean_ci
from aegir.observe.aggregate import (Group, RunRecord, block_title, find_runs, flatten, group_runs, is_companion,
                                     markdown_report, parameter_columns, short_key, split_blocks, value_of)

INPUT_ERROR = 2


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4f}"
    return "—" if value is None else str(value)


def _cfg(value: Any) -> str:
    """Config values as written (0.003, not 0.0030)."""
    return "—" if value is None else str(value)


def _objective(run: RunRecord) -> tuple[str | None, str, float | None]:
    objective = (run.summary or {}).get("objective") or {}
    value = objective.get("value")
    return objective.get("metric"), objective.get("mode", "min"), value if isinstance(value, (int, float)) else None


def _gates(run: RunRecord) -> str:
    gates = (run.summary or {}).get("gates") or {}
    if not gates:
        return "—"
    passed = sum(bool(g.get("passed")) for g in gates.values())
    return f"{passed}/{len(gates)} pass" + ("" if passed == len(gates) else " (" + ", ".join(
        n for n, g in gates.items() if not g.get("passed")) + " failed)")


def _provenance(run: RunRecord) -> str:
    data = run.metadata.get("data") or {}
    hashes = [f"config {run.metadata.get('config_hash', '—')}"]
    for name, product in data.items():
        if isinstance(product, dict):
            digest = product.get("sha256") or product.get("eval_sha256")
            if digest:
                hashes.append(f"{name} {str(digest)[:10]}")
    return "; ".join(hashes)


def leaderboard_rows(runs: Sequence[RunRecord], metrics: Sequence[str] | None = None
                     ) -> tuple[list[str], list[list[str]]]:
    """One (task, objective) block's runs ranked by objective: the parameters that set them apart (a sweep's
    swept parameters, the overrides that differ), seed, objective (for a run that did not finish: the last value it
    reported, with its step), the final metrics with their 95% CI, gates, status and provenance."""
    columns = parameter_columns(runs) if len(runs) > 1 else []
    finished_metrics = sorted({m for r in runs for m, v in ((r.summary or {}).get("metrics") or {}).items()
                               if not is_companion(m)})
    shown = list(metrics) if metrics else finished_metrics[:6]
    header = ["rank", "status", "run", *(short_key(k, columns) for k in columns), "seed", "objective", *shown,
              "gates", "provenance"]

    def sort_key(run: RunRecord) -> tuple[int, float]:
        _, mode, value = _objective(run)
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    rows = []
    for rank, run in enumerate(sorted(runs, key=sort_key), 1):
        metric, _, value = _objective(run)
        stats = (run.summary or {}).get("metric_stats") or {}
        cells = []
        for name in shown:
            val = ((run.summary or {}).get("metrics") or {}).get(name)
            stat = stats.get(name) or (stats.get("all") if name == "eval/reward" else None)
            ci = f" ± {stat['ci95']:.4f}" if stat and isinstance(stat.get("ci95"), (int, float)) and \
                math.isfinite(stat["ci95"]) else ""
            cells.append(_fmt(val) + ci if val is not None else "—")
        rows.append([str(rank), run.status, run.path.name, *(value_of(run, k) for k in columns), _cfg(run.seed),
                     _objective_cell(run), *cells, _gates(run), _provenance(run)])
    return header, rows


def _objective_cell(run: RunRecord) -> str:
    """`metric=value`; a run without a final value shows the last value it reported (pruned, failed, running)."""
    metric, _, value = _objective(run)
    if value is not None and metric:
        return f"{metric}={_fmt(value)}"
    metric = run.objective_metric
    last = run.last_reported(metric) if metric != "—" else None
    return f"{metric}={_fmt(last[1])} (last reported, step {last[0]})" if last else "—"


def arm_rows(runs: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Objective per corpus arm over one (task, objective) block: mean ± 95% CI over the finished seed replicates
    of one configuration. An arm run in several configurations gets one row per configuration, never one mean
    over different configurations."""
    groups = group_runs(runs)
    by_arm: dict[str, list[Group]] = defaultdict(list)
    for group in groups:
        by_arm[str(group.runs[0].metadata.get("arm", "—"))].append(group)
    several = any(len(g) > 1 for g in by_arm.values())
    header = ["arm", *(["configuration"] if several else []), "runs", "finished", "objective", "mean ± 95% CI"]
    rows = []
    for arm, arm_groups in sorted(by_arm.items()):
        for group in arm_groups:
            values = [v for r in group.finished for _, _, v in [_objective(r)] if v is not None]
            stat = mean_ci(values)
            rows.append([arm, *([group.label] if several else []), str(len(group.runs)), str(len(values)),
                         group.metric, f"{_fmt(stat.mean)} ± {_fmt(stat.ci95)}" if values else "—"])
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv_table(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def config_diff(a: RunRecord, b: RunRecord) -> list[tuple[str, Any, Any]]:
    fa, fb = flatten(a.config), flatten(b.config)
    keys = sorted(set(fa) | set(fb))
    return [(k, fa.get(k, "<absent>"), fb.get(k, "<absent>")) for k in keys
            if json.dumps(fa.get(k), sort_keys=True, default=str) != json.dumps(fb.get(k), sort_keys=True, default=str)]


def _single_run(path: Path) -> RunRecord:
    runs = [r for r in find_runs([path]) if r.path == path] if path.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"{path}: not a run directory (no metadata.json)")
    if runs[0].problem is not None:
        raise FileNotFoundError(f"{path}: {runs[0].status}")
    return runs[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegir.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="run, multirun or sweep directories")
    parser.add_argument("--format", choices=("md", "csv"), default="md")
    parser.add_argument("--metrics", default="", help="comma-separated metrics for the leaderboard columns")
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"), help="resolved-config diff")
    args = parser.parse_args(argv)
    if args.diff:
        try:
            a, b = (_single_run(p) for p in args.diff)
        except FileNotFoundError as err:
            print(f"aegir.report: {err}", file=sys.stderr)
            return INPUT_ERROR
        header, rows = ["key", args.diff[0].name, args.diff[1].name], [[k, _cfg(x), _cfg(y)]
                                                                      for k, x, y in config_diff(a, b)]
        print(_markdown_table(header, rows) if args.format == "md" else _csv_table(header, rows), end="")
        return 0
    if not args.paths:
        parser.print_usage(sys.stderr)
        return INPUT_ERROR
    missing = [p for p in args.paths if not p.is_dir()]
    if missing:
        print(f"aegir.report: {missing[0]}: no such directory", file=sys.stderr)
        return INPUT_ERROR
    runs = find_runs(args.paths)
    if not runs:
        print(f"aegir.report: no run directories (metadata.json) under {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return INPUT_ERROR
    metrics = [m for m in args.metrics.split(",") if m]
    blocks = split_blocks(runs)
    if args.format == "csv":
        print(_csv_table(*csv_leaderboard(blocks, metrics)), end="")
        return 0
    print(f"# Aegir report: {len(runs)} runs\n")
    print("Runs are compared only within one block of the same task and objective metric.\n")
    for (task, metric), block in blocks.items():
        print(f"## {block_title(task, metric, block[0].objective_mode)}: {len(block)} runs\n")
        print("### Leaderboard\n")
        print(_markdown_table(*leaderboard_rows(block, metrics)))
        print("### By arm\n")
        print(_markdown_table(*arm_rows(block)))
        print(markdown_report(group_runs(block), level=3, block_headings=False))
    return 0


def csv_leaderboard(blocks: dict[tuple[str, str], list[RunRecord]], metrics: Sequence[str]
                    ) -> tuple[list[str], list[list[str]]]:
    """Every block's leaderboard in one table: rank within the block, with task and objective-metric columns."""
    tables = [(task, metric, *leaderboard_rows(block, metrics)) for (task, metric), block in blocks.items()]
    header: list[str] = []
    for _, _, block_header, _ in tables:
        header += [h for h in block_header if h not in header]
    header = header[:3] + ["task", "objective_metric"] + header[3:]
    rows = []
    for task, metric, block_header, block_rows in tables:
        for row in block_rows:
            cells = dict(zip(block_header, row))
            cells.update(task=task, objective_metric=metric)
            rows.append([cells.get(h, "") for h in header])
    return header, rows

if __name__ == "__main__":
    sys.exit(main())

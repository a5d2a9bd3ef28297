"""`python -m aegir.report PATH... [--format md|csv] [--diff RUN_A RUN_B]`: tables over run and sweep directories.

For every run below the given paths: a leaderboard (the config keys that differ between the runs, the objective
and final metrics with their 95% CI, gate verdicts, status, provenance hashes), the seed aggregation per
configuration, and the comparison per corpus arm. `--diff A B` prints the resolved-config keys that differ between
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
from aegir.observe.aggregate import RunRecord, differing_keys, find_runs, flatten, group_runs, markdown_report

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


def leaderboard_rows(runs: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
    varying = differing_keys(runs) if len(runs) > 1 else []
    varying = [k for k in varying if not k.startswith(("stages", "gates"))][:8]
    finished_metrics = sorted({m for r in runs for m in (r.summary or {}).get("metrics", {})})
    shown = list(metrics) if metrics else finished_metrics[:6]
    header = ["rank", "status", "run", *varying, "seed", "objective", *shown, "gates", "provenance"]

    def sort_key(run: RunRecord) -> tuple[int, float]:
        _, mode, value = _objective(run)
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    rows = []
    for rank, run in enumerate(sorted(runs, key=sort_key), 1):
        flat = flatten(run.config)
        metric, _, value = _objective(run)
        stats = (run.summary or {}).get("metric_stats") or {}
        cells = []
        for name in shown:
            val = ((run.summary or {}).get("metrics") or {}).get(name)
            stat = stats.get(name) or (stats.get("all") if name == "eval/reward" else None)
            ci = f" ± {stat['ci95']:.4f}" if stat and isinstance(stat.get("ci95"), (int, float)) and \
                math.isfinite(stat["ci95"]) else ""
            cells.append(_fmt(val) + ci if val is not None else "—")
        rows.append([str(rank), run.status, run.path.name, *(_cfg(flat.get(k)) for k in varying), _cfg(run.seed),
                     f"{metric}={_fmt(value)}" if metric else "—", *cells, _gates(run), _provenance(run)])
    return header, rows


def arm_rows(runs: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Objective per corpus arm: mean ± 95% CI over the finished runs of that arm."""
    by_arm: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_arm[str(run.metadata.get("arm", "—"))].append(run)
    header = ["arm", "runs", "finished", "objective", "mean ± 95% CI"]
    rows = []
    for arm, members in sorted(by_arm.items()):
        values = [v for r in members if r.status == "finished" for _, _, v in [_objective(r)] if v is not None]
        metric = next((m for r in members for m, _, _ in [_objective(r)] if m), "—")
        stat = mean_ci(values)
        rows.append([arm, str(len(members)), str(len(values)), metric,
                     f"{_fmt(stat.mean)} ± {_fmt(stat.ci95)}" if values else "—"])
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
    leaderboard = leaderboard_rows(runs, metrics)
    arms = arm_rows(runs)
    if args.format == "csv":
        print(_csv_table(*leaderboard), end="")
        return 0
    print(f"# Aegir report: {len(runs)} runs\n\n## Leaderboard\n")
    print(_markdown_table(*leaderboard))
    print("## By arm\n")
    print(_markdown_table(*arms))
    print(markdown_report(group_runs(runs)).replace("# Seed aggregate", "## Seed aggregate", 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The V4.2 seed table (`| Task | Seed 42 | … | Mean ± 95% CI |`) from hand-made run directories, against SciPy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from aegir.observe.aggregate import find_runs, group_runs, markdown_report

REWARDS = {42: {"extraction": 0.50, "sql_qa": 0.20}, 123: {"extraction": 0.60, "sql_qa": 0.10},
           456: {"extraction": 0.40, "sql_qa": 0.30}}


def _run(root: Path, seed: int) -> None:
    path = root / f"run{seed}"
    path.mkdir(parents=True)
    config = {"name": "v42", "seed": seed, "algo": {"lr": 3e-4}}
    (path / "metadata.json").write_text(json.dumps({"status": "finished", "seed": seed, "config": config}))
    metrics = {f"eval/{t}/reward": r for t, r in REWARDS[seed].items()}
    metrics["eval/reward"] = float(np.mean(list(REWARDS[seed].values())))
    metrics["eval/extraction/reward/ci95"] = 0.1
    (path / "summary.json").write_text(json.dumps({"status": "finished", "metrics": metrics}))


def _ci(values: list[float]) -> tuple[float, float]:
    low, high = stats.t.interval(0.95, df=len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return float(np.mean(values)), float((high - low) / 2)


def test_per_task_seed_table(tmp_path: Path) -> None:
    for seed in REWARDS:
        _run(tmp_path, seed)
    table = markdown_report(group_runs(find_runs([tmp_path])))
    assert "| Task | Seed 42 | Seed 123 | Seed 456 | Mean ± 95% CI |" in table
    for task in ("extraction", "sql_qa"):
        values = [REWARDS[s][task] for s in (42, 123, 456)]
        mean, ci = _ci(values)
        cells = " | ".join(f"{v:.4f}" for v in values)
        assert f"| {task} | {cells} | {mean:.4f} ± {ci:.4f} |" in table
    overall = [float(np.mean(list(REWARDS[s].values()))) for s in (42, 123, 456)]
    mean, ci = _ci(overall)
    assert f"| all | {' | '.join(f'{v:.4f}' for v in overall)} | {mean:.4f} ± {ci:.4f} |" in table
    assert "| eval/extraction/reward |" in table  # the full metric table follows
    assert "| ci95 |" not in table  # a /ci95 companion metric is not taken for a task
    assert "/ci95 |" not in table  # ... nor averaged over seeds as if it were a metric (issue 16)


def test_a_configuration_without_finished_runs_lists_them_without_a_table(tmp_path: Path) -> None:
    path = tmp_path / "pruned"
    path.mkdir()
    config = {"name": "v42", "seed": 42, "algo": {"lr": 0.0}}
    (path / "metadata.json").write_text(json.dumps({"status": "pruned", "seed": 42, "config": config}))
    table = markdown_report(group_runs(find_runs([tmp_path])))
    assert "0/1 runs finished" in table and "No finished run yet" in table
    assert "| Metric |" not in table and "| Task |" not in table
    assert f"- seed 42: **pruned** — {path}" in table

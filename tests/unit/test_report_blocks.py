"""The report over mixed inputs never mislabels a number (issue 16): runs are compared only within one (task,
objective metric) block; a sweep's configurations are not averaged as replicates; the same configuration found by
two studies is not taken for two seeds; `/n` and `/ci95` are not averaged; headings are short; the leaderboard's
columns are the swept parameters; a pruned run shows the last value it reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegir.observe.aggregate import find_runs, group_runs, markdown_report
from aegir.report import main

BASE = {"algo": {"adv_eps": 1e-4, "group_size": 4, "kl_coef": 0.0, "lr": 1e-3}, "arm": {"name": "full"}}


def _write(path: Path, *, name: str, task: str, metric: str, mode: str, seed: int, value: float | None,
           status: str = "finished", algo: dict | None = None, overrides: list[str] | None = None,
           trial: dict | None = None, history: list[tuple[int, float]] = ()) -> Path:
    path.mkdir(parents=True)
    config = {"name": name, "seed": seed, "task": {"name": task}, "objective": {"metric": metric, "mode": mode},
              "arm": {"name": "full"}, "algo": {**BASE["algo"], **(algo or {})}, "paths": {"o": str(path)}}
    (path / "metadata.json").write_text(json.dumps({
        "status": status, "seed": seed, "arm": "full", "config": config, "config_hash": "h",
        "overrides": overrides or [f"seed={seed}"], "trial": trial}))
    if value is not None:
        (path / "summary.json").write_text(json.dumps({
            "status": "finished", "objective": {"metric": metric, "mode": mode, "value": value},
            "metrics": {metric: value, f"{metric}/n": 50, f"{metric}/ci95": 0.01},
            "metric_stats": {}, "gates": {}}))
    if history:
        (path / "history.jsonl").write_text("".join(json.dumps({"step": s, "time": 0.0, metric: v}) + "\n"
                                                    for s, v in history))
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A pretraining run, a 2-seed GRPO multirun, and two studies of a 2x2 GRPO grid (one trial pruned)."""
    _write(tmp_path / "runs" / "pre", name="pretrain", task="pretrain", metric="val/bpb", mode="min", seed=42,
           value=2.5, algo={"adv_eps": 0.5}, overrides=[])
    for seed, value in ((42, 0.6), (123, 0.8)):
        _write(tmp_path / "multiruns" / "m" / f"{seed}_grpo_toy_seed{seed}", name="grpo_toy", task="toy_arith",
               metric="eval/reward", mode="max", seed=seed, value=value, overrides=["+experiment=grpo_toy",
                                                                                     f"seed={seed}"])
    number = 0
    for study in ("toy_grid", "toy_grid_again"):
        for group_size in (4, 8):
            for kl in (0.0, 0.02):
                params = {"algo.group_size": group_size, "algo.kl_coef": kl}
                pruned = study == "toy_grid" and group_size == 8 and kl == 0.02
                _write(tmp_path / "sweeps" / study / "trials" / f"{number:04d}_{study}", name="grpo_toy",
                       task="toy_arith", metric="eval/reward", mode="max", seed=42,
                       value=None if pruned else 0.5 + group_size / 100 + kl,
                       status="pruned" if pruned else "finished",
                       algo={"group_size": group_size, "kl_coef": kl},
                       overrides=["+experiment=grpo_toy", "trainer.max_steps=60", f"algo.group_size={group_size}",
                                  f"algo.kl_coef={kl}", "objective.metric=eval/reward"],
                       trial={"study": study, "number": number, "params": params, "spec": "s.yaml"},
                       history=[(20, 0.31), (40, 0.37)] if pruned else [])
                number += 1
    return tmp_path


def _section(out: str, title: str) -> str:
    return out.split(title)[1].split("\n## ")[0]


def test_blocks_never_mix_metrics_or_tasks(mixed: Path, capsys) -> None:
    assert main([str(mixed)]) == 0
    out = capsys.readouterr().out
    pretrain = _section(out, "## task pretrain · objective val/bpb (min): 1 runs")
    grpo = _section(out, "## task toy_arith · objective eval/reward (max): 10 runs")
    assert "eval/reward" not in pretrain and "val/bpb" not in grpo
    arms = grpo.split("### By arm")[1].split("### Seed aggregate")[0]
    rows = [line for line in arms.splitlines() if line.startswith("| full")]
    # one row per configuration (2-seed multirun + 4 grid points x 2 studies, the pruned one included), none
    # averaging different configurations: every finished sweep row is its single trial's value
    assert len(rows) == 9
    assert all(" | eval/reward | " in row for row in rows)
    assert "| full | grpo_toy group_size=4,kl_coef=0.0,max_steps=60 [study toy_grid] | 1 | 1 | eval/reward | 0.5400 ± — |" in arms


def test_same_configuration_in_two_studies_is_not_two_seeds(mixed: Path) -> None:
    groups = group_runs(find_runs([mixed / "sweeps"]))
    assert len(groups) == 8 and all(len(g.runs) == 1 for g in groups)
    report = markdown_report(groups)
    assert "Seed 42 | Seed 42" not in report
    assert "/n |" not in report and "/ci95 |" not in report  # within-run statistics are not averaged
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert max(len(h) for h in headings) < 100
    assert "### grpo_toy group_size=8,kl_coef=0.02 [study toy_grid_again]" in report


def test_seed_replicates_still_aggregate(mixed: Path) -> None:
    groups = group_runs(find_runs([mixed / "multiruns"]))
    assert len(groups) == 1 and [r.seed for r in groups[0].finished] == [42, 123]
    assert groups[0].stats("eval/reward")["mean"] == pytest.approx(0.7)
    assert groups[0].label == "grpo_toy"


def test_leaderboard_columns_are_swept_parameters_and_pruned_rows_show_last_value(mixed: Path, capsys) -> None:
    assert main([str(mixed / "sweeps")]) == 0
    out = capsys.readouterr().out
    board = out.split("### Leaderboard")[1].split("### By arm")[0]
    header = next(line for line in board.splitlines() if line.startswith("| rank"))
    assert "| group_size | kl_coef | seed |" in header
    assert "adv_eps" not in header and "max_steps" not in header
    pruned = next(line for line in board.splitlines() if "| pruned |" in line)
    assert "| 8 | 0.02 | 42 | eval/reward=0.3700 (last reported, step 40) |" in pruned
    assert "- seed 42: **pruned** (last eval/reward = 0.3700 at step 40)" in out


def test_csv_has_task_and_objective_columns(mixed: Path, capsys) -> None:
    assert main([str(mixed), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rank,status,run,task,objective_metric,")
    assert sum(",pretrain,val/bpb," in line for line in lines) == 1

"""The report CLI on hand-made run directories: finished, failed and running runs, arms, seeds, config diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegir.report import main


def _run(root: Path, name: str, *, status: str, seed: int, arm: str, lr: float, bpb: float | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True)
    config = {"name": "pretrain", "seed": seed, "arm": {"name": arm}, "algo": {"lr": lr}, "paths": {"o": str(root)}}
    (path / "metadata.json").write_text(json.dumps({
        "status": status, "seed": seed, "arm": arm, "config": config, "config_hash": f"h{lr}",
        "data": {"corpus": {"sha256": "ab" * 32}}}))
    if bpb is not None:
        (path / "summary.json").write_text(json.dumps({
            "status": "finished", "objective": {"metric": "val/bpb", "mode": "min", "value": bpb},
            "metrics": {"val/bpb": bpb, "val/loss": bpb * 0.6931},
            "metric_stats": {"val/bpb": {"mean": bpb, "std": 0.1, "n": 8, "ci95": 0.05}},
            "gates": {"g": {"passed": bpb < 3}}}))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    _run(tmp_path, "a", status="finished", seed=1, arm="full", lr=0.003, bpb=2.5)
    _run(tmp_path, "b", status="finished", seed=2, arm="full", lr=0.003, bpb=2.7)
    _run(tmp_path, "c", status="finished", seed=1, arm="no_schema", lr=0.001, bpb=3.2)
    _run(tmp_path, "d", status="failed", seed=2, arm="no_schema", lr=0.001)
    _run(tmp_path, "e", status="running", seed=3, arm="full", lr=0.003)
    return tmp_path


def test_leaderboard_arms_and_seed_tables(runs: Path, capsys) -> None:
    assert main([str(runs)]) == 0
    out = capsys.readouterr().out
    board = out.split("## Leaderboard")[1].split("## By arm")[0]
    lines = [line for line in board.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    assert [line.split(" | ")[2] for line in lines] == ["a", "b", "c", "d", "e"]  # by objective, then unfinished
    assert "| 1 | finished | a | 0.003 | full | 1 | val/bpb=2.5000 | 2.5000 ± 0.0500 |" in board
    assert "| failed | d |" in board and "| running | e |" in board
    assert "1/1 pass" in board and "0/1 pass (g failed)" in board and "corpus abababab" in board
    arms = out.split("## By arm")[1].split("## Seed aggregate")[0]
    assert "| full | 3 | 2 | val/bpb | 2.6000 ± 1.2706 |" in arms  # t_{0.975,1} * 0.1414 / sqrt(2)
    assert "| no_schema | 2 | 1 | val/bpb | 3.2000 ± — |" in arms
    assert "seed 2: **failed**" in out and "seed 3: **running**" in out


def test_csv_and_diff(runs: Path, capsys) -> None:
    assert main([str(runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("rank,status,run,")
    assert main(["--diff", str(runs / "a"), str(runs / "c")]) == 0
    out = capsys.readouterr().out
    assert "| algo.lr | 0.003 | 0.001 |" in out and "| arm.name | full | no_schema |" in out
    assert "| seed |" not in out  # same seed


def test_bad_paths_exit_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert main([str(tmp_path)]) == 2
    assert main(["--diff", str(tmp_path), str(tmp_path)]) == 2

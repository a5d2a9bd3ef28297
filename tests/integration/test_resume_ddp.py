"""A run killed with SIGKILL resumes to the same metrics as an uninterrupted run; 2-process DDP stays in sync."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aegir.rundir import read_history, read_json
from tests.conftest import FAST, run_cli, run_cli_and_kill

COMPARED = ("train/loss", "train/lr", "val/loss", "val/bpb")
LONGER = [*FAST, "trainer.max_steps=30", "trainer.val_check_interval=5"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_cli([*LONGER, f"hydra.run.dir={straight}"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    status = run_cli_and_kill(LONGER, killed, "train/loss", 16, cwd=tmp_path)
    assert status == -signal.SIGKILL, "the run finished before it could be killed"
    assert read_json(killed / "metadata.json")["status"] == "running"  # nothing could record the kill
    assert not (killed / "summary.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "aegir.resume", str(killed)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    meta = read_json(killed / "metadata.json")
    assert meta["status"] == "finished" and meta["resumed_at"]

    a, b = read_history(straight / "history.jsonl"), read_history(killed / "history.jsonl")
    for name in COMPARED:
        assert a[name] == b[name], name
    sa, sb = read_json(straight / "summary.json"), read_json(killed / "summary.json")
    assert sa["metrics"]["val/bpb"] == sb["metrics"]["val/bpb"]
    assert sa["steps"] == sb["steps"] == 30


@pytest.mark.slow
def test_resume_without_a_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    result = run_cli([*FAST, "resume=true", f"hydra.run.dir={tmp_path / 'fresh'}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert "resume: no checkpoint to resume from" in result.stderr


def test_resume_cli_rejects_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "aegir.resume", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "not a run directory" in result.stderr


@pytest.mark.slow
def test_ddp_sim_two_cpu_processes_stay_in_sync(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    result = run_cli([*FAST, "trainer=ddp_sim", f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    history = read_history(run_dir / "history.jsonl")
    assert history["ddp/param_max_abs_diff"] == [(12, 0.0)]  # identical parameters on both ranks at the end
    assert len(history["val/bpb"]) == 3
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "finished" and summary["metrics"]["val/bpb"] < 8.0
    assert read_json(run_dir / "metadata.json")["config"]["trainer"]["devices"] == 2

"""How a run ends, as a user sees it (issue 19, items 3 and 4): a diverged run is `failed` with a one-line reason
and exit 1; a run shorter than its validation interval still ends with the weights it scored in last.ckpt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow


def _only_run(root: Path) -> Path:
    runs = [p.parent for p in root.rglob("metadata.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_diverged_run_is_failed_with_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_cli([*FAST, "trainer.max_steps=2", "algo.lr=1e6", f"paths.output_root={tmp_path}/out"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("aegir: ") and "at step 2" in last_line, last_line
    assert "Traceback" not in result.stderr
    run = _only_run(tmp_path / "out")
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["status"] == "failed"
    assert metadata["reason"].startswith("DivergedError: ") and "at step 2" in metadata["reason"]
    assert not (run / "summary.json").exists()
    # the diverged final weights never replace a checkpoint: none was written before, none is now
    assert not list((run / "checkpoints").glob("*.ckpt*")) if (run / "checkpoints").exists() else True


def test_run_shorter_than_its_validation_interval_keeps_its_final_weights(tmp_path: Path) -> None:
    result = run_cli([*FAST, "trainer.max_steps=3", "trainer.val_check_interval=4", f"paths.output_root={tmp_path}"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    run = _only_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    last = run / "checkpoints" / "last.ckpt"
    assert summary["evaluated_checkpoint"] == f"final weights ({last})"
    assert summary["checkpoints"] == {"best": None, "last": str(last)}
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert not list((run / "checkpoints").glob("*.pending"))

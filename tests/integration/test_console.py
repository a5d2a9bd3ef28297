"""The console of a run as a user (or a log file) sees it (issue 16): Lightning's lines once, no litlogger tip, no
tqdm cursor-up junk when the output is not a terminal, and the final lines saying what was scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_console_is_clean_when_logged(tmp_path: Path) -> None:
    result = run_cli(["+experiment=grpo_toy", "trainer.max_steps=4", "trainer.val_check_interval=2",
                      "algo.group_size=4", "algo.prompts_per_step=4", "task.n_eval=8", f"paths.output_root={tmp_path}"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert console.count("GPU available:") == 1
    assert "litlogger" not in console.lower()
    assert "\x1b[A" not in console  # the nested validation bar is off when the output is not a terminal
    assert "Validation" not in console
    assert "eval/reward of best.ckpt (on the split that selected it):" in result.stdout
    run_log = next(tmp_path.rglob("run.log")).read_text()
    assert run_log.count("GPU available:") == 1 and "litlogger" not in run_log.lower()

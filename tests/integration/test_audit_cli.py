"""`python -m aegir.audit`: the sheet it writes from a real policy, its verdict once scored, and the refusal of a
training run with `audit.required=true` when the sheet is missing or disagrees with the reward."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aegir.audit import read_audit_sheet, write_audit_sheet
from aegir.errors import InputError
from aegir.main import run
from tests.conftest import ROOT, run_cli


def _audit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aegir.audit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def _scored_sheet(path: Path, agree: bool, overwrite: bool = False) -> None:
    """Eight hand-made rows over two tasks; human scores rise with the reward (agree) or fall with it."""
    rows = []
    for i in range(8):
        reward = i / 7
        rows.append({"id": f"r{i}", "task": "sql_qa" if i % 2 else "push", "prompt": "p", "completion": f"c{i}",
                     "auto_reward": reward, "human_score": round(10 * reward if agree else 10 - 10 * reward, 2)})
    write_audit_sheet(path, rows, overwrite=overwrite)


@pytest.mark.slow
def test_audit_writes_a_sheet_of_real_completions_then_judges_it(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    result = _audit(["+experiment=v42_smoke", f"paths.output_root={out}", "audit.completions_per_task=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    sheet = out / "audit" / "v42_smoke_data0.csv"
    assert "wrote 8 completions (extraction, insights, push, sql_qa; stage grpo" in result.stdout
    assert "auditing the untrained policy" in result.stderr  # no checkpoint given: said, not hidden
    df = read_audit_sheet(sheet)
    assert len(df) == 8 and df["task"].value_counts().to_dict() == {t: 2 for t in
                                                                   ("extraction", "insights", "push", "sql_qa")}
    assert df["human_score"].isna().all() and df["auto_reward"].between(0, 1).all()
    assert df["prompt"].str.startswith("system: ").all()

    # once scored, the same command computes rho and judges it (exit 0 pass, 3 fail)
    _scored_sheet(sheet, agree=True)
    passed = _audit(["+experiment=v42_smoke", f"paths.output_root={out}"], tmp_path)
    assert passed.returncode == 0, passed.stderr
    assert "| overall | 8 | 1.000 |" in passed.stdout and "PASSED" in passed.stdout
    with pytest.raises(InputError, match="already has 8 human score"):  # a scored sheet is never clobbered
        _scored_sheet(sheet, agree=False)
    _scored_sheet(sheet, agree=False, overwrite=True)
    failed = _audit(["+experiment=v42_smoke", f"paths.output_root={out}"], tmp_path)
    assert failed.returncode == 3 and "FAILED" in failed.stdout and "-1.000 <= min_rho 0.70" in failed.stdout


@pytest.mark.slow
def test_training_refuses_to_start_without_a_passing_audit(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    common = ["+experiment=pretrain_smoke", f"paths.output_root={tmp_path / 'outputs'}", "audit.required=true",
              f"audit.sheet={sheet}"]
    missing = run_cli(common, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        f"aegir: audit.required: refusing to train: {sheet}: audit sheet not found; create it with "
        "`python -m aegir.audit +experiment=<name>`, then fill in human_score (0-10)")
    assert not list((tmp_path / "outputs").rglob("metadata.json"))  # nothing half-written

    _scored_sheet(sheet, agree=False)
    disagree = run_cli(common, cwd=tmp_path)
    assert disagree.returncode == 2 and "Spearman rho -1.000 <= min_rho 0.70" in disagree.stderr


def test_training_starts_when_the_audit_passes(compose, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    _scored_sheet(sheet, agree=True)
    overrides = ["audit.required=true", f"audit.sheet={sheet}", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    assert run(compose(overrides), overrides=overrides) > 0  # val/bpb of a real (short) run

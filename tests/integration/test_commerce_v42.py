"""The V4.2 pipeline end to end at smoke size: SFT warm start on the commerce records, then GRPO from its best
checkpoint with the execution-checked rewards; per-task eval rewards with CIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegir.main import run
from aegir.rundir import read_history, read_json


def _run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json") if "stages" not in p.parts]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.slow
def test_v42_smoke_runs_both_stages(compose, tmp_path: Path) -> None:
    overrides = ["+experiment=v42_smoke", "trainer.enable_progress_bar=false", "logger=none",
                 f"paths.output_root={tmp_path / 'outputs'}"]
    run(compose(overrides, fast=False), overrides=overrides)
    root = _run_dir(tmp_path / "outputs")
    sft, grpo = root / "stages" / "1_sft", root / "stages" / "2_grpo"
    assert read_json(sft / "summary.json")["metrics"]["val/bpb"] > 0
    meta = read_json(grpo / "metadata.json")
    assert meta["parent"]["stage"] == "sft" and meta["config"]["model"]["pretrained"].endswith("best.ckpt")
    assert meta["data"]["commerce"]["n_eval"] == 16 and len(meta["data"]["commerce"]["eval_sha256"]) == 64
    assert meta["config"]["reward"]["components"]["sql_exec"]["weight"] == 1.0
    assert set(read_json(grpo / "summary.json")["reward_errors"]) == {"count", "first"}  # issue 19 item 6
    assert meta["config"]["reward"]["workers"] == "auto"  # sql_exec scored in the pool by default (item 2)
    stats = read_json(grpo / "summary.json")["metric_stats"]
    assert {"extraction", "sql_qa", "insights", "push", "all"} <= set(stats)
    assert all(stats[t]["n"] == 4 for t in ("extraction", "sql_qa", "insights", "push"))
    top = read_json(root / "summary.json")  # the run's own summary carries the last stage's CIs and both wall times
    assert top["metric_stats"] == stats and top["stages"]["sft"]["wall_time_s"] > 0
    assert top["wall_time_s"] >= top["stages"]["grpo"]["wall_time_s"] > 0
    history = read_history(grpo / "history.jsonl")
    assert "grpo/reward/sql_exec/mean" in history or "grpo/reward/push_rules/mean" in history
    assert history["eval/reward"][0][0] == 0  # the SFT policy is scored before any GRPO step
    # the eval set does not move with the run seed
    from aegir.config import validate
    from aegir.loops.factory import build_stage
    from aegir.rundir import RunPaths

    cfg = validate(compose([*overrides[:3], "seed=7", "algo=sft"], fast=False))
    built = build_stage(cfg, RunPaths(tmp_path / "unused"))
    assert built.provenance["commerce"]["eval_sha256"] == meta["data"]["commerce"]["eval_sha256"]

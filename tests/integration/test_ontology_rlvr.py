"""The ontology_rlvr pipeline end to end at smoke size: SFT on reference compositions, then GRPO on the verifier
from its best checkpoint; catalog copy in the run directory, catalog and pass-rate metrics, eval samples with every
component."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegir.main import run
from aegir.rundir import read_history, read_json


@pytest.mark.slow
def test_ontology_rlvr_smoke_runs_both_stages(compose, tmp_path: Path) -> None:
    overrides = ["+experiment=ontology_rlvr", "trainer.enable_progress_bar=false", "logger=none",
                 f"paths.output_root={tmp_path / 'outputs'}", "task.n_records=200", "task.n_eval=6",
                 "model.d_model=64", "model.n_layers=1", "reward.catalog_reload=true",
                 "++stages.sft.set.trainer.max_steps=4", "++stages.sft.set.trainer.val_check_interval=2",
                 "++stages.grpo.set.trainer.max_steps=2", "++stages.grpo.set.trainer.val_check_interval=2",
                 "++stages.grpo.set.algo.max_completion_length=24", "++stages.grpo.set.algo.group_size=2"]
    run(compose(overrides, fast=False), overrides=overrides)
    root = next(p.parent for p in (tmp_path / "outputs").rglob("metadata.json") if "stages" not in p.parts)
    grpo = root / "stages" / "2_grpo"
    meta = read_json(grpo / "metadata.json")
    assert meta["data"]["ontology"]["n_eval"] == 6 and len(meta["data"]["ontology"]["eval_sha256"]) == 64
    version = meta["data"]["ontology"]["catalog_sha256"][:12]
    assert (grpo / "catalogs" / f"{version}.yaml").is_file()
    history = read_history(grpo / "history.jsonl")
    for name in ("grpo/pass/structural", "grpo/pass/consistent", "grpo/pass/coverage_close", "eval/pass/structural",
                 "reward/catalog_version", "reward/catalog_errors", "grpo/reward/onto_coverage/mean",
                 "grpo/collapse"):
        assert name in history, name
    assert history["eval/reward"][0][0] == 0
    row = json.loads((grpo / "samples" / "eval_step000000.jsonl").read_text().splitlines()[0])
    assert {"reward/onto_structural", "reward/onto_consistency", "reward/onto_parsimony",
            "reward/onto_coverage"} <= set(row)
    assert "eval/pass/coverage_close" in read_json(grpo / "summary.json")["metrics"]

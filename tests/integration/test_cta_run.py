"""Short real column-annotation runs from composed configs: the run directory contract of a CTA fine-tune, gate
verdicts in summary.json and exit statuses, the two-stage pretrain -> CTA experiment, H-Net and CPA, exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aegir.errors import InputError
from aegir.main import run
from aegir.observe.tensorboard import EVAL_BANDS
from aegir.rundir import RunPaths, read_history, read_json
from tests.conftest import assert_banded, band_charts, run_cli

# A CTA run in seconds: 60 synthetic tables (~330 train / ~40 val / ~40 test columns), a 1-layer model, short rows.
CTA_FAST = [
    "trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false", "trainer.num_threads=1", "task.data.n_tables=60",
    "task.data.total_bytes=96", "task.data.target_bytes=64", "task.data.per_column_bytes=24",
    "model.d_model=32", "model.n_layers=1", "model.head_size=32", "algo.batch_size=8", "algo.val_batch_size=64",
    "algo.warmup_steps=2",
]
LIVE_GATES = ("live_mcl_clusters", "live_macro_f1", "live_distinct_preds")


def _single_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json") if "stages" not in p.parts]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _run(compose: Any, overrides: list[str]) -> float:
    return run(compose(overrides, fast=False), overrides=overrides)


def test_short_cta_fine_tune_writes_metrics_liveness_and_gates(compose, tmp_path: Path) -> None:
    overrides = ["+experiment=cta_from_scratch", *CTA_FAST, f"paths.output_root={tmp_path / 'o'}"]
    objective = _run(compose, overrides)
    paths = RunPaths(_single_run_dir(tmp_path / "o"))

    summary = read_json(paths.summary)
    metrics = summary["metrics"]
    assert summary["objective"] == {"metric": "val/macro_f1", "mode": "max", "value": objective}
    assert 0.0 <= objective <= 1.0
    for key in ("val/macro_f1", "val/micro_f1", "val/distinct_preds", "val/loss", "test/macro_f1", "test/micro_f1",
                "live/mcl_clusters", "live/distinct_preds", "live/top1_share", "live/spread_ratio", "live/rankme"):
        assert key in metrics, key
    assert any(k.startswith("val/f1/") for k in metrics)  # per-label F1 at the end
    assert metrics["val/distinct_preds"] == metrics["live/distinct_preds"] >= 1
    stats = summary["metric_stats"]["val/macro_f1"]
    assert stats["mean"] == pytest.approx(objective) and stats["n"] > 20 and stats["ci95"] >= 0
    assert set(summary["gates"]) == set(LIVE_GATES) and summary["gates_required"] is False
    for name in LIVE_GATES:
        verdict = summary["gates"][name]
        assert verdict["observed"] == pytest.approx(metrics[verdict["metric"]])
        assert verdict["passed"] == (verdict["observed"] >= verdict["threshold"])
    assert summary["gates_passed"] == all(summary["gates"][g]["passed"] for g in LIVE_GATES)

    history = read_history(paths.history)
    for name in LIVE_GATES:  # a verdict at every validation (after 3 and 6 optimizer steps), and the final one
        assert [s for s, _ in history[f"gate/{name}"]][:2] == [3, 6]
    assert [s for s, _ in history["val/macro_f1"]] == [3, 6] and "train/loss" in history
    assert band_charts(paths.tb)[EVAL_BANDS]["val/macro_f1 (bootstrap 95% CI)"][0] == "val/macro_f1"
    assert_banded(history, "val/macro_f1")
    # best.ckpt holds the best validation macro F1, and the summary scores exactly it
    assert objective == pytest.approx(max(v for _, v in history["val/macro_f1"]), abs=1e-6)

    metadata = read_json(paths.metadata)
    tables = metadata["data"]["tables"]
    assert tables["kind"] == "cta" and tables["n_labels"] == 87 and len(tables["examples_sha256"]) == 64
    events = EventAccumulator(str(paths.tb), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]
    figure = events.Images("val/confusion_matrix")[-1]  # labelled cells of 30 px, not 4 px per class
    assert figure.width >= 300 and figure.height >= 300
    for tag in ("val/macro_f1", "live/mcl_clusters", "gate/live_macro_f1", "train/loss"):
        assert tag in events.Tags()["scalars"], tag


@pytest.mark.slow
def test_cli_required_failing_gate_exits_3_after_saving(tmp_path: Path) -> None:
    result = run_cli(["+experiment=cta_from_scratch", *CTA_FAST, "trainer.max_steps=3", f"paths.output_root={tmp_path}/o",
                      "gates.required=true", "gates.live_macro_f1.value=1.01"], cwd=tmp_path, timeout=600)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "required gate(s) failed:" in result.stderr and "live_macro_f1" in result.stderr
    run_dir = _single_run_dir(tmp_path / "o")
    summary = read_json(run_dir / "summary.json")
    assert summary["gates"]["live_macro_f1"]["passed"] is False and summary["gates_required"] is True
    assert read_json(run_dir / "metadata.json")["status"] == "finished"
    assert "gate live_macro_f1: FAIL" in result.stdout


@pytest.mark.slow
def test_cli_cta_liveness_without_checkpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli(["+experiment=cta_liveness", *CTA_FAST, f"paths.output_root={tmp_path}/o"], cwd=tmp_path,
                     timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("aegir: model.pretrained: missing;"), result.stderr
    assert not list((tmp_path / "o").rglob("metadata.json")) if (tmp_path / "o").exists() else True


def test_from_scratch_control_refuses_a_checkpoint(compose, tmp_path: Path) -> None:
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(InputError, match="backbone_init=scratch"):
        _run(compose, ["+experiment=cta_from_scratch", *CTA_FAST, f"model.pretrained={ckpt}",
                       f"paths.output_root={tmp_path / 'o'}"])


def test_pretrain_then_cta_chains_the_stages(compose, tmp_path: Path) -> None:
    smoke = ["trainer.enable_progress_bar=false", "trainer.num_threads=1", "model.d_model=32", "model.n_layers=1",
             "++stages.pretrain.set.trainer.max_steps=4", "++stages.pretrain.set.trainer.val_check_interval=2",
             "++stages.pretrain.set.task.data.n_documents=40", "++stages.pretrain.set.task.seq_len=64",
             "++stages.pretrain.set.task.val_windows=4", "++stages.pretrain.set.task.batch_size=4",
             "++stages.cta.set.trainer.max_steps=2", "++stages.cta.set.trainer.val_check_interval=2",
             "++stages.cta.set.task.data.n_tables=40", "++stages.cta.set.task.data.total_bytes=96",
             "++stages.cta.set.task.data.target_bytes=64", "++stages.cta.set.algo.batch_size=4",
             "++stages.cta.set.task.eval_test=false", "++stages.cta.set.gates.required=false"]
    overrides = ["+experiment=pretrain_then_cta", *smoke, f"paths.output_root={tmp_path / 'o'}"]
    objective = _run(compose, overrides)
    root = _single_run_dir(tmp_path / "o")
    first, second = RunPaths(root / "stages" / "1_pretrain"), RunPaths(root / "stages" / "2_cta")
    meta1, meta2 = read_json(first.metadata), read_json(second.metadata)
    corpus = meta1["data"]["corpus"]
    assert corpus["source"] == "tables" and corpus["tables_seed"] != meta2["data"]["tables"]["data_seed"]
    assert meta1["config"]["gates"] == {"required": False}  # the liveness gates belong to the CTA stage only
    assert meta2["parent"]["stage"] == "pretrain" and meta2["config"]["model"]["pretrained"] == str(first.best_ckpt)
    assert meta2["config"]["algo"]["backbone_init"] == "pretrained"
    summary = read_json(root / "summary.json")
    assert summary["objective"]["metric"] == "val/macro_f1" and summary["objective"]["value"] == objective
    assert set(summary["gates"]) == {f"cta/{g}" for g in LIVE_GATES}
    assert "live/mcl_clusters" in summary["metrics"]


def test_hnet_backbone_fine_tunes_with_chunk_statistics(compose, tmp_path: Path) -> None:
    overrides = ["task=cta", "algo=classify", "model=hnet_nano", "objective.metric=val/macro_f1", "objective.mode=max",
                 *CTA_FAST, "model.d_model=[32,32,32]", "trainer.max_steps=2", "trainer.val_check_interval=2",
                 "task.eval_test=false", "algo.pooling=last", f"paths.output_root={tmp_path / 'o'}"]
    overrides = [o for o in overrides if o not in ("model.d_model=32", "model.n_layers=1", "model.head_size=32")]
    _run(compose, overrides)
    paths = RunPaths(_single_run_dir(tmp_path / "o"))
    metrics = read_json(paths.summary)["metrics"]
    assert read_json(paths.metadata)["model"]["arch"] == "hnet"
    for stage in (0, 1):
        assert 0.0 < metrics[f"chunk/stage{stage}/boundary_frac"] <= 1.0
    assert "live/mcl_clusters" in metrics and "test/macro_f1" not in metrics
    history = read_history(paths.history)
    assert "chunk/stage0/boundary_frac" in history and "train/ratio_loss" in history


def test_cpa_runs_with_its_own_labels(compose, tmp_path: Path) -> None:
    overrides = ["+experiment=cta_from_scratch", "task=cpa", *CTA_FAST, "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "task.eval_test=false", "algo.pooling=mean_last",
                 "algo.class_weighting=balanced", f"paths.output_root={tmp_path / 'o'}"]
    _run(compose, overrides)
    run_dir = _single_run_dir(tmp_path / "o")
    tables = read_json(run_dir / "metadata.json")["data"]["tables"]
    assert tables["kind"] == "cpa" and tables["n_labels"] != 87
    assert "val/macro_f1" in read_json(run_dir / "summary.json")["metrics"]


def test_resumed_run_continues_the_exact_series(compose, tmp_path: Path) -> None:
    """Batches and dropout masks are functions of (seed, rank, step): a run stopped after its step-3 checkpoint and
    resumed logs the same losses as an uninterrupted run."""
    base = ["+experiment=cta_from_scratch", *CTA_FAST, "algo.head_dropout=0.2"]
    straight = tmp_path / "straight"
    run(compose([*base, f"paths.output_root={tmp_path}"], fast=False), overrides=base, run_dir=straight)

    class StopAfterFirstCheckpoint(L.Callback):
        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step == 4:
                raise RuntimeError("simulated crash")

    interrupted = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(compose([*base, f"paths.output_root={tmp_path}"], fast=False), overrides=base, run_dir=interrupted,
            callbacks=[StopAfterFirstCheckpoint()])
    assert read_json(interrupted / "metadata.json")["status"] == "failed"
    run(compose([*base, "resume=true", f"paths.output_root={tmp_path}"], fast=False), overrides=base,
        run_dir=interrupted)
    metadata = read_json(interrupted / "metadata.json")
    assert metadata["status"] == "finished" and metadata["resumed_at"]  # continued from last.ckpt, not restarted
    a, b = read_history(straight / "history.jsonl"), read_history(interrupted / "history.jsonl")
    assert a["train/loss"][-1] == b["train/loss"][-1] and a["val/macro_f1"][-1] == b["val/macro_f1"][-1]
    assert a["val/loss"][-1] == b["val/loss"][-1]

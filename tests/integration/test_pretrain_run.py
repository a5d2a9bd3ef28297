"""Short real pretraining runs of a nano RWKV-7: the run directory contract, determinism, gates, stages, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aegir.errors import GateFailedError
from aegir.main import run
from aegir.observe.tensorboard import EVAL_BANDS
from aegir.rundir import RunPaths, read_history, read_json
from tests.conftest import FAST, assert_banded, band_charts, run_cli

DETERMINISTIC_METRICS = ("train/loss", "train/bpb", "train/lr", "val/loss", "val/bpb")


def _single_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json") if "stages" not in p.parts]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_run_directory_contract(compose, tmp_path: Path) -> None:
    overrides = ["+gates.bpb_below_8.metric=val/bpb", "+gates.bpb_below_8.op='<'", "+gates.bpb_below_8.value=8.0"]
    objective = run(compose(overrides), overrides=overrides)
    paths = RunPaths(_single_run_dir(tmp_path / "outputs"))

    metadata = read_json(paths.metadata)
    assert metadata["status"] == "finished" and metadata["ended_at"]
    for key in ("config", "config_hash", "overrides", "git", "versions", "hardware", "seed", "data_seed", "arm",
                "data", "model", "parent"):
        assert key in metadata, key
    assert metadata["arm"] == "full" and metadata["seed"] == 42
    assert len(metadata["data"]["corpus"]["sha256"]) == 64 and len(metadata["data"]["val_windows"]["sha256"]) == 64
    assert metadata["model"]["n_parameters"] > 0 and metadata["versions"]["torch"]

    summary = read_json(paths.summary)
    assert summary["objective"] == {"metric": "val/bpb", "mode": "min", "value": objective}
    stats = summary["metric_stats"]["val/bpb"]
    assert stats["n"] == 8 and stats["ci95"] > 0 and stats["mean"] == pytest.approx(objective)
    assert 0 < objective < 8.0  # below uniform bytes after 12 steps
    assert summary["gates"]["bpb_below_8"]["passed"] and summary["gates_passed"]

    history = read_history(paths.history)
    assert [s for s, _ in history["val/bpb"]] == [4, 8, 12]  # every 4 optimizer steps, at the steps done
    assert len(history["train/loss"]) == 6 and "perf/bytes_per_s" in history
    assert history["gate/bpb_below_8"][-1][1] == 1.0
    # best.ckpt is the checkpoint with the lowest val/bpb, and the summary scores exactly it
    assert objective == pytest.approx(min(v for _, v in history["val/bpb"]), abs=1e-5)
    assert paths.best_ckpt.is_file() and paths.last_ckpt.is_file()

    events = EventAccumulator(str(paths.tb), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train/loss", "val/bpb", "perf/bytes_per_s"):
        assert tag in tags, (tag, tags)
    assert "gate/bpb_below_8" not in tags and "epoch" not in tags  # single points / a constant: not charts
    # the eval curve as a band chart of its own (mean ± 95% CI over the validation windows)
    assert band_charts(paths.tb)[EVAL_BANDS]["val/bpb ± 95% CI"] == ("val/bpb", "val/bpb/lower", "val/bpb/upper")
    assert_banded(history, "val/bpb")


def test_same_config_and_seed_give_identical_series(compose, tmp_path: Path) -> None:
    series = []
    for attempt in range(2):
        overrides = [f"paths.output_root={tmp_path / str(attempt)}"]
        run(compose(overrides), overrides=overrides)
        history = read_history(_single_run_dir(tmp_path / str(attempt)) / "history.jsonl")
        series.append({k: history[k] for k in DETERMINISTIC_METRICS})
    assert series[0] == series[1]
    other = ["paths.output_root=" + str(tmp_path / "other"), "seed=7"]
    run(compose(other), overrides=other)
    assert read_history(_single_run_dir(tmp_path / "other") / "history.jsonl")["train/loss"] != series[0]["train/loss"]


def test_failure_while_working_marks_the_run_failed(compose, tmp_path: Path, monkeypatch) -> None:
    from aegir.loops.lm import ByteLMModule

    def explode(self, batch, batch_idx):  # noqa: ANN001
        raise RuntimeError("simulated failure at step %d" % self.global_step)

    monkeypatch.setattr(ByteLMModule, "training_step", explode)
    with pytest.raises(RuntimeError, match="simulated failure"):
        run(compose(), overrides=[])
    metadata = read_json(_single_run_dir(tmp_path / "outputs") / "metadata.json")
    assert metadata["status"] == "failed" and "simulated failure" in metadata["reason"]


def test_two_stage_experiment_links_the_stages(compose, tmp_path: Path) -> None:
    overrides = ["+experiment=pretrain_two_stage", *FAST, f"paths.output_root={tmp_path / 'outputs'}"]
    objective = run(compose(["+experiment=pretrain_two_stage"]), overrides=overrides)
    root = _single_run_dir(tmp_path / "outputs")
    top = read_json(root / "metadata.json")
    assert top["kind"] == "multi_stage" and top["status"] == "finished"
    assert [s["name"] for s in top["stages"]] == ["pretrain_no_schema", "continue_full"]
    first, second = RunPaths(root / "stages" / "1_pretrain_no_schema"), RunPaths(root / "stages" / "2_continue_full")
    meta1, meta2 = read_json(first.metadata), read_json(second.metadata)
    assert meta1["arm"] == "no_schema" and meta1["parent"] is None
    assert meta2["arm"] == "full" and meta2["config"]["algo"]["lr"] == 1.0e-3
    assert meta2["parent"] == {"stage": "pretrain_no_schema", "checkpoint": str(first.best_ckpt),
                               "run_dir": str(first.root)}
    assert meta2["config"]["model"]["pretrained"] == str(first.best_ckpt)
    assert meta1["data"]["corpus"]["sha256"] != meta2["data"]["corpus"]["sha256"]  # the arms differ
    summary = read_json(root / "summary.json")
    assert summary["objective"]["value"] == objective == read_json(second.summary)["objective"]["value"]
    assert set(summary["stages"]) == {"pretrain_no_schema", "continue_full"}
    # stage 2 starts from stage 1's weights: its first validation is far below a fresh model's
    first_val_2 = read_history(second.history)["val/bpb"][0][1]
    first_val_1 = read_history(first.history)["val/bpb"][0][1]
    assert first_val_2 < first_val_1


def test_required_gate_failure_raises_after_saving(compose, tmp_path: Path) -> None:
    overrides = ["+gates.impossible.metric=val/bpb", "+gates.impossible.op='<'", "+gates.impossible.value=0.01",
                 "+gates.required=true"]
    with pytest.raises(GateFailedError, match="impossible"):
        run(compose(overrides), overrides=overrides)
    root = _single_run_dir(tmp_path / "outputs")
    summary = read_json(root / "summary.json")
    assert summary["gates"]["impossible"]["passed"] is False and summary["gates_required"] is True
    assert read_json(root / "metadata.json")["status"] == "finished"
    assert (root / "checkpoints" / "best.ckpt").is_file()


def test_user_corpus_files(compose, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    docs = [{"text": f"Document {i}: the quick brown fox jumps over the lazy dog. " * 8} for i in range(40)]
    corpus.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    overrides = ["task.data.source=files", f"task.data.path={corpus}"]
    run(compose(overrides), overrides=overrides)
    metadata = read_json(_single_run_dir(tmp_path / "outputs") / "metadata.json")
    assert metadata["data"]["corpus"]["source"] == "files" and metadata["data"]["corpus"]["path"] == str(corpus)


@pytest.mark.slow
def test_cli_bad_data_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": 3}\n')
    result = run_cli([*FAST, "task.data.source=files", f"task.data.path={corpus}", f"paths.output_root={tmp_path}/o"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(corpus) in lines[0] and ":2" in lines[0], result.stderr
    assert not list((tmp_path / "o").rglob("metadata.json")) if (tmp_path / "o").exists() else True


@pytest.mark.slow
def test_cli_missing_pretrained_checkpoint_exits_2(tmp_path: Path) -> None:
    result = run_cli([*FAST, f"model.pretrained={tmp_path}/nope.ckpt", f"paths.output_root={tmp_path}/o"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == f"aegir: model.pretrained: no such checkpoint file: {tmp_path}/nope.ckpt"


@pytest.mark.slow
def test_cli_run_ends_by_saying_where_results_are_and_gate_exit_3(tmp_path: Path) -> None:
    result = run_cli([*FAST, f"paths.output_root={tmp_path}/o", "+gates.impossible.metric=val/bpb",
                      "+gates.impossible.op='<'", "+gates.impossible.value=0.01", "+gates.required=true"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "required gate(s) failed: impossible" in result.stderr
    run_dir = _single_run_dir(tmp_path / "o")
    assert f"run directory: {run_dir}" in result.stdout
    assert "val/bpb of best.ckpt (on the split that selected it):" in result.stdout and f"tensorboard --logdir {run_dir}" in result.stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / ".hydra" / "overrides.yaml").is_file()


def test_hparams_group_seed_replicates(compose, tmp_path: Path) -> None:
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    groups = {}
    for seed in (1, 2, 3):
        overrides = [f"seed={seed}", f"paths.output_root={tmp_path / str(seed)}", "trainer.max_steps=4",
                     "trainer.val_check_interval=4", *(["algo.lr=0.001"] if seed == 3 else [])]
        run(compose(overrides), overrides=overrides)
        events = EventAccumulator(str(_single_run_dir(tmp_path / str(seed)) / "tb" / "final"),
                                  size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["algo/lr"].number_value > 0 and start.hparams["seed"].number_value == seed
        assert "val/bpb" in events.Tags()["scalars"]  # the final value, in the HParams session's sub-run
        groups[seed] = start.group_name
    assert groups[1] == groups[2] != groups[3]  # seeds of one configuration share a group; another lr does not

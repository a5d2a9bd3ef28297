"""Short real pretraining runs of the nano H-Net: chunk statistics in history / TensorBoard / summary, the parameter
count in metadata.json, one-line exit-2 errors for bad layouts, and the H-Net vs RWKV-7 comparison experiment."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aegir.config import section_object, validate
from aegir.main import run
from aegir.models.build import build_model, count_parameters
from aegir.rundir import RunPaths, read_history, read_json
from tests.conftest import FAST, ROOT, run_cli

# conftest.FAST without its isotropic-model keys (an H-Net has per-stage widths and no n_layers), on one intra-op
# thread: nano's ops are small, and two threads on a busy 2-core machine made a 12-step run 5x slower
FAST_HNET = [o for o in FAST if not o.startswith("model.")] + ["trainer.num_threads=1"]
CHUNK_NAMES = ("boundary_frac", "mean_prob", "compression", "ratio_loss", "degenerate")


def _single_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_nano_hnet_pretraining_records_chunk_statistics(compose, tmp_path: Path, caplog) -> None:
    overrides = ["model=hnet_nano", *FAST_HNET, f"paths.output_root={tmp_path / 'outputs'}"]
    with caplog.at_level("INFO", logger="aegir"):
        objective = run(compose(overrides, fast=False), overrides=overrides)
    paths = RunPaths(_single_run_dir(tmp_path / "outputs"))

    metadata = read_json(paths.metadata)
    expected = count_parameters(build_model(section_object("model", validate(compose(overrides, fast=False)).model)))
    assert metadata["model"] == {"arch": "hnet", "name": "hnet_nano", "n_parameters": expected}
    assert f"model hnet_nano (hnet): {expected:,} parameters" in caplog.text

    history = read_history(paths.history)
    assert len(history["train/loss"]) == 6 and "train/ratio_loss" in history and "perf/bytes_per_s" in history
    for stage in (0, 1):
        for name in CHUNK_NAMES:
            series = history[f"chunk/stage{stage}/{name}"]
            assert len(series) == 6, (stage, name)
        assert all(0 < v <= 1 for _, v in history[f"chunk/stage{stage}/boundary_frac"])
    assert "chunk/stage2/boundary_frac" not in history  # the innermost stage does not route
    ratio = history["train/ratio_loss"][-1][1]
    stage_sum = sum(history[f"chunk/stage{s}/ratio_loss"][-1][1] for s in (0, 1))
    assert ratio == pytest.approx(0.03 * stage_sum, rel=1e-5)

    summary = read_json(paths.summary)
    metrics = summary["metrics"]
    assert metrics["val/bpb"] == pytest.approx(objective) and 0 < objective < 8.0
    assert metrics["perf/bytes_per_s"] > 0
    for stage in (0, 1):
        frac = metrics[f"chunk/stage{stage}/boundary_frac"]
        assert 0 < frac <= 1 and metrics[f"chunk/stage{stage}/compression"] == pytest.approx(1 / frac)

    events = EventAccumulator(str(paths.tb), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train/loss", "val/bpb", "train/ratio_loss", "chunk/stage0/boundary_frac", "chunk/stage1/mean_prob",
                "chunk/stage1/compression", "chunk/stage0/degenerate"):
        assert tag in tags, (tag, tags)


@pytest.mark.slow
def test_unknown_layer_letter_exits_2_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(["model=hnet_nano", "model.arch_layout=[w1,[w1,[q2],w1],w1]", *FAST_HNET,
                      f"paths.output_root={out}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "config error: model.arch_layout:" in lines[0] and "unknown layer letter 'q'" in lines[0], lines[0]
    assert not list(out.rglob("metadata.json")) if out.exists() else True


def test_comparison_experiment_pairs_models_of_similar_size_on_the_same_budget(compose) -> None:
    experiment = OmegaConf.load(ROOT / "conf" / "experiment" / "pretrain_hnet_vs_rwkv7.yaml")
    models = str(experiment.hydra.sweeper.params.model).split(",")  # what `-m` sweeps when not overridden
    assert models == ["hnet_nano", "rwkv7_nano"]
    cfgs = [validate(compose(["+experiment=pretrain_hnet_vs_rwkv7", f"model={m}"], fast=False)) for m in models]
    assert [c.model.arch for c in cfgs] == ["hnet", "rwkv7"]
    counts = [count_parameters(build_model(section_object("model", c.model))) for c in cfgs]
    assert abs(counts[0] / counts[1] - 1) < 0.1, counts
    same = ("task", "trainer", "algo", "seed", "data_seed", "arm")
    views = [OmegaConf.to_container(OmegaConf.masked_copy(c, list(same)), resolve=True) for c in cfgs]
    assert views[0] == views[1]  # same bytes, same order, same steps and optimiser


@pytest.mark.slow
def test_comparison_multirun_summarises_both_models(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "+experiment=pretrain_hnet_vs_rwkv7", *FAST_HNET, f"hydra.sweep.dir={sweep}"],
                     cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = {read_json(p.parent / "metadata.json")["model"]["name"]: read_json(p)
                 for p in sweep.rglob("summary.json")}
    assert set(summaries) == {"hnet_nano", "rwkv7_nano"}
    for summary in summaries.values():
        assert summary["metrics"]["val/bpb"] > 0 and summary["metrics"]["perf/bytes_per_s"] > 0
        assert summary["metric_stats"]["val/bpb"]["ci95"] > 0
    assert "chunk/stage0/compression" in summaries["hnet_nano"]["metrics"]
    rows = list(csv.DictReader((sweep / "aggregate.csv").open()))
    assert {r["metric"] for r in rows} >= {"val/bpb", "perf/bytes_per_s"}

"""The seed aggregate's TensorBoard runs (issue 16): headline metrics only, under the runs' own tag names, in a run
of its own per configuration, bands in one Custom Scalars category; read back with EventAccumulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from aegir.observe.aggregate import SEED_AGGREGATE_CATEGORY, aggregate

HISTORY = {42: [0.1, 0.4, 0.7], 123: [0.2, 0.5, 0.6]}


def _run(root: Path, seed: int, group_size: int) -> None:
    path = root / f"{group_size}_seed{seed}"
    path.mkdir(parents=True)
    config = {"name": "grpo_toy", "seed": seed, "task": {"name": "toy_arith"}, "algo": {"group_size": group_size},
              "objective": {"metric": "eval/reward", "mode": "max"}}
    (path / "metadata.json").write_text(json.dumps({"status": "finished", "seed": seed, "config": config,
                                                    "overrides": [f"algo.group_size={group_size}", f"seed={seed}"]}))
    (path / "summary.json").write_text(json.dumps({
        "status": "finished", "objective": {"metric": "eval/reward", "mode": "max", "value": HISTORY[seed][-1]},
        "metrics": {"eval/reward": HISTORY[seed][-1], "eval/reward/n": 50}}))
    lines = []
    for i, value in enumerate(HISTORY[seed]):
        lines.append({"step": i * 10, "time": 0.0, "eval/reward": value, "eval/reward/ci95": 0.1,
                      "eval/reward/lower": value - 0.1, "eval/reward/upper": value + 0.1, "train/lr": 1e-3,
                      "grpo/reward/mean": value / 2, "gate/learns": 1.0, "perf/tokens_per_s": 9.0})
    (path / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_aggregate_runs_overlay_the_seeds_under_their_own_tags(tmp_path: Path) -> None:
    for group_size in (4, 8):
        for seed in HISTORY:
            _run(tmp_path, seed, group_size)
    aggregate(tmp_path)
    aggregate(tmp_path)  # rebuilt, not appended to
    runs = sorted(p.name for p in (tmp_path / "aggregate_tb").iterdir())
    assert runs == ["grpo_toy_group_size=4", "grpo_toy_group_size=8"]
    events = EventAccumulator(str(tmp_path / "aggregate_tb" / runs[0]), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"eval/reward", "grpo/reward/mean", "seed_band/eval/reward/lower", "seed_band/eval/reward/upper",
                    "seed_band/grpo/reward/mean/lower", "seed_band/grpo/reward/mean/upper"}
    means = [(e.step, e.value) for e in events.Scalars("eval/reward")]
    assert [s for s, _ in means] == [0, 10, 20]
    assert [v for _, v in means] == pytest.approx([0.15, 0.45, 0.65])
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    assert [c.title for c in layout.category] == [SEED_AGGREGATE_CATEGORY]
    assert [c.margin.series[0].value for c in layout.category[0].chart] == ["eval/reward", "grpo/reward/mean"]

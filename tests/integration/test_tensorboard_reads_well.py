"""TensorBoard as its users expect it (issue 16), read back with EventAccumulator from a short real GRPO run: one
step for TensorBoard and history.jsonl, no `epoch` / `final/*` / `gate/*` clutter, the resolved
config as text, the eval completions as a text table, and an HParams session in `tb/final/` started at the
beginning and ended with a status and the final headline metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.api_pb2 import Status
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from aegir.main import run
from aegir.rundir import read_history

SMALL = ["+experiment=grpo_toy", "trainer.enable_progress_bar=false", "algo.group_size=4", "algo.prompts_per_step=4",
         "task.n_eval=16", "trainer.log_every_n_steps=2", "trainer.max_steps=6", "trainer.val_check_interval=3"]


def _events(path: Path) -> EventAccumulator:
    events = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_one_step_axis_no_clutter_and_an_hparams_session(compose, tmp_path: Path) -> None:
    overrides = [*SMALL, "algo.kl_coef=0.0"]
    run(compose(overrides, fast=False), overrides=overrides)
    run_dir = next(p.parent for p in (tmp_path / "outputs").rglob("metadata.json"))
    events = _events(run_dir / "tb")
    scalars = events.Tags()["scalars"]

    # 6. (partly) TensorBoard and history.jsonl share Lightning's step; the sample files still count optimizer
    # steps done (0, 3, 6 against 0, 2, 5): aligning them broke exact resume, see docs/metrics.md, Steps
    tb_steps = [e.step for e in events.Scalars("eval/reward")]
    history = read_history(run_dir / "history.jsonl")
    assert tb_steps == [s for s, _ in history["eval/reward"]] == [0, 2, 5]
    assert [e.step for e in events.Scalars("train/loss")] == [s for s, _ in history["train/loss"]]

    # 5. clutter: no epoch, no final/* or gate/* single points in the run's charts
    assert "epoch" not in scalars and "epoch" not in history
    assert not [t for t in scalars if t.startswith(("final/", "gate/"))], scalars
    assert "gate/learns" in history  # the verdict stays in history.jsonl (run directory contract)
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "monitor: eval/reward" in config_text and "${" not in config_text  # resolved

    # 9. the eval reward as a band chart of its own in Custom Scalars (no smoothing, no outlier clipping there)
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    margins = {c.title: [s.value for s in c.margin.series] for cat in layout.category for c in cat.chart}
    assert margins["eval reward (mean ± 95% CI)"] == ["eval/reward"]
    assert {c.margin.series[0].lower for cat in layout.category for c in cat.chart} >= {"eval/reward/lower"}

    # 10. the eval completions as a text table per evaluation
    table = events.Tensors("eval/completions/text_summary")
    assert [e.step for e in table] == [0, 3, 6]  # written with the sample files, at trainer.global_step
    text = table[-1].tensor_proto.string_val[0].decode()
    assert text.startswith("| task | prompt | completion | reward |") and "toy_exact" in text

    # 8. HParams: the session in tb/final, the hyperparameters that matter, no experiment summary to shadow others
    final = _events(run_dir / "tb" / "final")
    content = final.PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content
    with pytest.raises(KeyError):  # the run's own charts carry no HParams records (Lightning's included)
        events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.group_name.startswith("config-")
    hparams = {k: (v.string_value or v.number_value) for k, v in start.hparams.items()}
    assert hparams["seed"] == 42 and hparams["task/name"] == "toy_arith" and hparams["algo/group_size"] == 4
    assert hparams["experiment"] == "grpo_toy" and hparams["algo/kl_coef"] == 0.0
    assert len(hparams) < 20  # not the 111 keys of the whole config
    end = HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == Status.Value("STATUS_SUCCESS")
    assert set(final.Tags()["scalars"]) == {"eval/reward"}
    assert [e.step for e in final.Scalars("eval/reward")] == [6]  # the last step (optimizer steps done)

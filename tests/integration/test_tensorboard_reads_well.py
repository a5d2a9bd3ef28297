"""TensorBoard as its users expect it (issue 16), read back with EventAccumulator from a short real GRPO run (the
one trial of a sweep, so Optuna's record is read back too): one step axis (TensorBoard = history.jsonl = sample
files = Optuna's intermediate values = the checkpoints), an eval curve of 7 points in a Custom Scalars band chart,
no `epoch` / `final/*` / `gate/*` clutter, the resolved config as text, the eval completions as a text table, and
an HParams session in `tb/final/` started at the beginning and ended with a status and the final headline
metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.api_pb2 import Status
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from aegir.observe.tensorboard import EVAL_BANDS
from aegir.rundir import read_history
from aegir.sweep import load_spec, run_sweep

SMALL = ["+experiment=grpo_toy", "trainer.enable_progress_bar=false", "algo.group_size=4", "algo.prompts_per_step=4",
         "task.n_eval=16", "trainer.log_every_n_steps=2", "trainer.max_steps=6", "trainer.val_check_interval=1"]


def _events(path: Path) -> EventAccumulator:
    events = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_one_step_axis_no_clutter_and_an_hparams_session(tmp_path: Path) -> None:
    spec = tmp_path / "axis.yaml"
    spec.write_text(yaml.safe_dump({
        "study_name": "axis", "base": SMALL, "n_trials": 1,
        "output_dir": str(tmp_path / "axis"), "objective": {"metric": "eval/reward", "direction": "maximize"},
        "sampler": {"name": "grid"}, "params": {"algo.kl_coef": {"type": "categorical", "choices": [0.0]}}}))
    (trial,) = run_sweep(load_spec(spec)).get_trials()
    run_dir = Path(trial.user_attrs["run_dir"])
    events = _events(run_dir / "tb")
    scalars = events.Tags()["scalars"]

    # 6. one step axis, the optimizer steps done: an evaluation after N steps is at N in TensorBoard, history.jsonl,
    # the sample file names, the completions table and Optuna's intermediate values (the step-0 evaluation of the
    # untrained policy is logged before training, not reported to Optuna); training metrics at the step they made
    evals = list(range(7))
    history = read_history(run_dir / "history.jsonl")
    assert [e.step for e in events.Scalars("eval/reward")] == [s for s, _ in history["eval/reward"]] == evals
    samples = sorted(int(p.stem.removeprefix("eval_step")) for p in (run_dir / "samples").glob("eval_step*.jsonl"))
    assert samples == evals
    assert sorted(trial.intermediate_values) == evals[1:]
    reported = [trial.intermediate_values[s] for s in evals[1:]]
    assert reported == pytest.approx([v for _, v in history["eval/reward"][1:]])
    assert [e.step for e in events.Scalars("train/loss")] == [s for s, _ in history["train/loss"]] == [2, 4, 6]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == evals[-1]  # the checkpoint's step is the axis's too

    # 5. clutter: no epoch, no final/* or gate/* single points in the run's charts
    assert "epoch" not in scalars and "epoch" not in history
    assert not [t for t in scalars if t.startswith(("final/", "gate/"))], scalars
    assert "gate/learns" in history  # the verdict stays in history.jsonl (run directory contract)
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "monitor: eval/reward" in config_text and "${" not in config_text  # resolved

    # 9. the eval reward as a band chart of its own in Custom Scalars (drawn unsmoothed; the band keeps the curve
    # inside the range "ignore outliers" keeps), with all 7 evaluations and their bounds
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {cat.title: {c.title: c.margin.series[0] for c in cat.chart} for cat in layout.category}
    band = charts[EVAL_BANDS]["eval/reward ± 95% CI"]
    assert (band.value, band.lower, band.upper) == ("eval/reward", "eval/reward/lower", "eval/reward/upper")
    assert [c.title for c in layout.category][0] == EVAL_BANDS  # the eval curves come first
    for tag in (band.lower, band.upper):
        assert [e.step for e in events.Scalars(tag)] == evals
    assert all(lo.value <= mid.value <= hi.value for lo, mid, hi in zip(
        events.Scalars(band.lower), events.Scalars("eval/reward"), events.Scalars(band.upper)))

    # 10. the eval completions as a text table per evaluation
    table = events.Tensors("eval/completions/text_summary")
    assert [e.step for e in table] == evals
    text = table[-1].tensor_proto.string_val[0].decode()
    assert text.startswith("| task | prompt | completion | reward |") and "toy_exact" in text

    # 8. HParams: the session in tb/final, the hyperparameters that matter, no experiment summary to shadow others
    final = _events(run_dir / "tb" / "final")
    content = final.PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content
    with pytest.raises(KeyError):  # the run's own charts carry no HParams records (Lightning's included)
        events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.group_name.startswith("grpo_toy kl_coef=0.0 #")  # the row reads what sets the trial apart
    hparams = {k: (v.string_value or v.number_value) for k, v in start.hparams.items()}
    assert hparams["seed"] == 42 and hparams["task/name"] == "toy_arith" and hparams["algo/group_size"] == 4
    assert hparams["experiment"] == "grpo_toy" and hparams["algo/kl_coef"] == 0.0
    assert len(hparams) < 20  # not the 111 keys of the whole config
    end = HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == Status.Value("STATUS_SUCCESS")
    assert set(final.Tags()["scalars"]) == {"eval/reward"}
    assert [e.step for e in final.Scalars("eval/reward")] == [6]  # the last step

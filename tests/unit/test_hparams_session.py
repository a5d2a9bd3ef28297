"""The HParams session of a run (issue 16), read back with EventAccumulator: the hyperparameters that matter, a
start written before any result, an end status for pruned and failed runs, no experiment summary."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.api_pb2 import Status
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from aegir.observe.tensorboard import FINAL_RUN, end_session, key_hparams, replicate_group, start_session

CONFIG = {"name": "grpo_toy", "seed": 42, "task": {"name": "toy_arith"}, "model": {"name": "rwkv7_nano"},
          "arm": {"name": "full"}, "algo": {"name": "grpo", "lr": 1e-3, "group_size": 8, "kl_coef": 0.02,
                                            "adv_eps": 1e-4, "clip_eps_low": 0.2},
          "trainer": {"max_steps": 60}, "paths": {"output_root": "/x"}}


def _content(tb: Path) -> dict[str, bytes]:
    events = EventAccumulator(str(tb / FINAL_RUN), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events.PluginTagToContent("hparams")


def test_key_hparams_are_identity_swept_and_overridden() -> None:
    hparams = key_hparams(CONFIG, ["+experiment=grpo_toy", "paths.output_root=/x", "algo.clip_eps_low=0.2",
                                   "trainer.enable_progress_bar=false"], {"algo.kl_coef": 0.02})
    assert hparams == {"name": "grpo_toy", "task/name": "toy_arith", "model/name": "rwkv7_nano", "arm/name": "full",
                       "seed": 42, "algo/name": "grpo", "algo/lr": 1e-3, "algo/group_size": 8,
                       "algo/kl_coef": 0.02, "trainer/max_steps": 60, "experiment": "grpo_toy",
                       "algo/clip_eps_low": 0.2}


def test_the_row_of_a_configuration_reads_what_sets_it_apart_and_is_shared_by_its_seeds() -> None:
    run = ["+experiment=grpo_toy", "seed=42", "algo.kl_coef=0.02", "paths.output_root=/x"]
    group = replicate_group(CONFIG, run)
    assert group.startswith("grpo_toy kl_coef=0.02 #") and len(group.rsplit("#", 1)[1]) == 8
    assert replicate_group({**CONFIG, "seed": 7}, [*run[:1], "seed=7", *run[2:]]) == group  # another seed
    other = replicate_group({**CONFIG, "algo": {**CONFIG["algo"], "lr": 0.5}}, run)  # reads alike, differs
    assert other != group and other.startswith("grpo_toy kl_coef=0.02 #")
    trial = replicate_group(CONFIG, [*run, "trainer.max_steps=60"], {"algo.group_size": 8, "algo.kl_coef": 0.02})
    assert trial.startswith("grpo_toy group_size=8 kl_coef=0.02 #")  # a trial: its swept parameters


def test_a_pruned_run_has_its_row_with_a_failure_status(tmp_path: Path) -> None:
    start_session(tmp_path, key_hparams(CONFIG), "config-abc")
    content = _content(tmp_path)  # a killed run stops here: its row exists, without an end
    assert set(content) == {"_hparams_/session_start_info"}
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.group_name == "config-abc" and start.hparams["model/name"].string_value == "rwkv7_nano"
    end_session(tmp_path, "pruned")
    content = _content(tmp_path)
    end = HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == Status.Value("STATUS_FAILURE") and "_hparams_/experiment" not in content


def test_a_finished_run_ends_with_success_and_its_final_values(tmp_path: Path) -> None:
    start_session(tmp_path, key_hparams(CONFIG), "config-abc")
    end_session(tmp_path, "finished", {"eval/reward": 0.7, "eval/reward/ci95": 0.1, "train/lr": 1e-3}, 60,
                "eval/reward")
    events = EventAccumulator(str(tmp_path / FINAL_RUN), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert events.Tags()["scalars"] == ["eval/reward"]
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("eval/reward")] == [(60, 0.7)]
    end = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_end_info"])
    assert end.session_end_info.status == Status.Value("STATUS_SUCCESS")

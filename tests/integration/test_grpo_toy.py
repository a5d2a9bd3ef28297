"""GRPO end to end on the toy arithmetic task: it learns, it resumes exactly after a kill, DDP ranks stay in sync."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aegir.main import run
from aegir.rundir import read_history, read_json
from tests.conftest import run_cli, run_cli_and_kill

SMALL = ["+experiment=grpo_toy", "trainer.enable_progress_bar=false", "algo.group_size=4", "algo.prompts_per_step=4",
         "task.n_eval=16", "trainer.log_every_n_steps=1"]


def _run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.slow
def test_grpo_toy_eval_reward_rises_from_its_start(compose, tmp_path: Path) -> None:
    """The first thing a new user runs: `python run.py +experiment=grpo_toy`, same budget and seed."""
    overrides = ["+experiment=grpo_toy", "trainer.enable_progress_bar=false"]
    objective = run(compose(overrides, fast=False), overrides=overrides)
    run_dir = _run_dir(tmp_path / "outputs")
    history = read_history(run_dir / "history.jsonl")
    series = history["eval/reward"]
    start, best = series[0], max(v for _, v in series)
    assert start[0] == 0
    assert best - start[1] > 0.25, series  # measured: 0.11 -> 0.65 with seed 42
    summary = read_json(run_dir / "summary.json")
    assert summary["objective"]["metric"] == "eval/reward" and summary["objective"]["value"] == objective
    assert summary["metric_stats"]["toy_arith"]["n"] == 50 and summary["gates"]["learns"]["passed"]
    for name in ("grpo/reward/mean", "grpo/reward/std", "grpo/reward/toy_exact/mean", "grpo/adv/std",
                 "grpo/frac_zero_std", "grpo/clip_ratio/region", "grpo/entropy", "grpo/completion_len/mean",
                 "grpo/completion_len/max", "grpo/truncated_ratio", "grpo/collapse", "perf/time/generate",
                 "perf/time/update", "perf/tokens_per_s"):
        assert name in history, name
    samples = sorted((run_dir / "samples").glob("eval_step*.jsonl"))
    assert samples[0].name == "eval_step000000.jsonl" and len(samples) == 11  # steps 0, 15, ..., 150


@pytest.mark.slow
def test_grpo_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    common = [*SMALL, "trainer.max_steps=24", "trainer.val_check_interval=6"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_cli([*common, f"hydra.run.dir={straight}"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    status = run_cli_and_kill(common, killed, "grpo/reward/mean", 14, cwd=tmp_path)
    assert status == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run([sys.executable, "-m", "aegir.resume", str(killed)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = read_history(straight / "history.jsonl"), read_history(killed / "history.jsonl")
    for name in ("grpo/reward/mean", "grpo/adv/std", "train/loss", "eval/reward"):
        assert a[name] == b[name], name
    assert read_json(straight / "summary.json")["metrics"] == {
        k: v for k, v in read_json(killed / "summary.json")["metrics"].items()}


@pytest.mark.slow
def test_grpo_ddp_sim_ranks_roll_out_their_own_prompts_and_stay_in_sync(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    result = run_cli([*SMALL, "trainer=ddp_sim", "trainer.max_steps=6", "trainer.val_check_interval=3",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    history = read_history(run_dir / "history.jsonl")
    assert history["ddp/param_max_abs_diff"] == [(6, 0.0)]
    assert len(history["grpo/reward/mean"]) == 6
    assert read_json(run_dir / "summary.json")["status"] == "finished"


def test_grpo_kl_reference_errors_and_margin_chart(compose, tmp_path: Path) -> None:
    """A short run with the KL term on, a reward component that raises on some completions, TensorBoard bands."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import tests.unit.reward_fixtures  # noqa: F401  (registers test_bad_value)

    overrides = [*SMALL, "trainer.max_steps=4", "trainer.val_check_interval=2", "algo.kl_coef=0.05",
                 "+reward.components.test_bad_value.weight=0.1"]
    run(compose(overrides, fast=False), overrides=overrides)
    run_dir = _run_dir(tmp_path / "outputs")
    history = read_history(run_dir / "history.jsonl")
    assert all(v >= 0 for _, v in history["grpo/kl"]) and len(history["grpo/kl"]) == 4
    assert sum(v for _, v in history["grpo/reward/errors"]) > 0
    errors = (run_dir / "samples" / "errors.jsonl").read_text().splitlines()
    assert errors and "test_bad_value" in errors[0]
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert "grpo/reward/lower" in events.Tags()["scalars"]
    assert events.PluginTagToContent("custom_scalars")  # the margin-chart layout was written


def test_no_reference_copy_without_kl(compose) -> None:
    from aegir.loops.factory import build_stage
    from aegir.rundir import RunPaths

    from aegir.config import validate

    off = build_stage(validate(compose(SMALL, fast=False)), RunPaths(Path("unused")))
    on = build_stage(validate(compose([*SMALL, "algo.kl_coef=0.1"], fast=False)), RunPaths(Path("unused")))
    assert off.module.ref is None and on.module.ref is not None
    assert not any(p.requires_grad for p in on.module.ref.parameters())


@pytest.mark.parametrize("knobs", [
    ["algo.num_iterations=2", "algo.loss_type=grpo"],
    ["algo.advantage=gdpo", "algo.loss_type=bnpo"],
    ["algo.advantage=rloo", "algo.loss_type=dr_grpo", "algo.scale_rewards=none"],
    ["algo.dynamic_sampling.enabled=true", "algo.overlong.enabled=true", "algo.mask_truncated_completions=true",
     "algo.entropy_coef=0.01", "algo.scale_rewards=batch"],
    ["algo.collapse.std_threshold=10.0", "algo.collapse.patience=2", "algo.collapse.stop=true"],
    ["algo.importance_sampling_level=sequence", "algo.loss_type=grpo"],  # GSPO
    ["algo.delta=4.0", "algo.kl_coef=0.001"],  # INTELLECT-2 two-sided clip
    ["algo.top_entropy_quantile=0.2"],
    ["algo.entropy_coef=0.01", "algo.entropy_norm=loss_type", "algo.loss_type=dr_grpo"],
    ["algo.advantage=gdpo", "algo.overlong.enabled=true", "algo.overlong.cache_len=2",
     "algo.dynamic_sampling.enabled=true"],
])
def test_every_knob_runs_end_to_end(compose, tmp_path: Path, knobs: list[str]) -> None:
    overrides = [*SMALL, "trainer.max_steps=4", "trainer.val_check_interval=2", "algo.micro_batch_size=5", *knobs]
    run(compose(overrides, fast=False), overrides=overrides)
    run_dir = _run_dir(tmp_path / "outputs")
    history = read_history(run_dir / "history.jsonl")
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "finished" and "eval/reward" in summary["metrics"]
    if "algo.num_iterations=2" in knobs:  # two optimizer steps per generation batch, both on the step axis
        assert [s for s, _ in history["grpo/reward/mean"]] == [2, 4] and summary["steps"] == 4
    if "algo.collapse.stop=true" in knobs:  # every reward std is under 10: fires at the 2nd step and stops
        assert history["grpo/collapse"][1][1] == 1.0 and summary["steps"] == 2
    if "algo.top_entropy_quantile=0.2" in knobs:  # ~20% of the tokens carry the policy gradient (more on ties)
        kept = [v for _, v in history["grpo/top_entropy/kept"]]
        assert len(kept) == 4 and all(0.0 < v < 1.0 for v in kept) and min(kept) < 0.35, kept
    if "algo.overlong.enabled=true" in knobs:  # the penalty is a reward column of its own
        assert "grpo/reward/overlong_penalty/mean" in history

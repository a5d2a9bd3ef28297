"""The dynamic task sampler inside the GRPO loop: weighted prompt draws, updates from per-task eval rewards,
`sampler/<task>_weight` in the history, and the state carried through checkpoints (resume)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from aegir.config import load_group, validate
from aegir.errors import InputError
from aegir.loops.factory import build_stage
from aegir.loops.grpo import task_sampler_from_config
from aegir.main import run
from aegir.rundir import RunPaths, read_history, read_json

TASKS = ["extraction", "insights", "push", "sql_qa"]  # the sampler's (sorted) task order
COMMERCE_GRPO = [
    "task=commerce", "algo=grpo", "reward=v42", "task.data.scale=tiny",
    "task.data.n_per_task={extraction: 24, sql_qa: 24, insights: 24, push: 24}",
    "task.eval_minimums={extraction: 3, sql_qa: 3, insights: 3, push: 3}",
    "model.d_model=64", "model.n_layers=2", "algo.group_size=4", "algo.prompts_per_step=4",
    "algo.max_completion_length=16", "objective.metric=eval/reward", "objective.mode=max",
    "trainer.enable_progress_bar=false", "logger=none",
]


def _module(compose, *extra: str):
    cfg = validate(compose([*COMMERCE_GRPO, *extra], fast=False))
    module = build_stage(cfg, RunPaths(Path("unused"))).module
    module._trainer = SimpleNamespace(sanity_checking=False, world_size=1, global_step=0, global_rank=0)
    return module


def _rows(rewards: dict[str, float]) -> list[dict[str, object]]:
    return [{"task": t, "reward": r} for t, r in rewards.items() for _ in range(3)]


def test_improvement_sampler_updates_from_eval_rewards_on_its_interval(compose) -> None:
    module = _module(compose, "algo.task_sampler=improvement", "algo.sampler.update_interval=100")
    sampler = module.task_sampler
    assert sampler.tasks == TASKS and sampler.weights == {t: 0.25 for t in TASKS}
    module._update_task_sampler(_rows({t: 0.0 for t in TASKS}))  # step 0: the baseline
    module._trainer.global_step = 50  # not due: the interval is 100 steps
    module._update_task_sampler(_rows({"extraction": 0.5, "insights": 0.5, "push": 0.5, "sql_qa": 0.5}))
    assert sampler.weights == {t: 0.25 for t in TASKS}
    module._trainer.global_step = 100
    # extraction +0.10 (> 0.05: x0.85), insights +0.03 (unchanged), push and sql_qa +0 (< 0.01: x1.3)
    module._update_task_sampler(_rows({"extraction": 0.10, "insights": 0.03, "push": 0.0, "sql_qa": 0.0}))
    raw = [0.25 * 0.85, 0.25, 0.25 * 1.3, 0.25 * 1.3]
    expected = [w / sum(raw) for w in raw]  # 0.1910, 0.2247, 0.2921, 0.2921: inside [0.10, 0.60]
    assert list(sampler.weights.values()) == pytest.approx(expected, abs=1e-12)
    metrics = sampler.metrics()
    assert set(metrics) == {f"sampler/{t}_weight" for t in TASKS}


def test_sanity_check_evals_do_not_move_the_weights(compose) -> None:
    module = _module(compose, "algo.task_sampler=improvement", "algo.sampler.update_interval=1")
    module._update_task_sampler(_rows({t: 0.0 for t in TASKS}))
    module._trainer.sanity_checking, module._trainer.global_step = True, 5
    module._update_task_sampler(_rows({"extraction": 1.0, "insights": 0.0, "push": 0.0, "sql_qa": 0.0}))
    assert module.task_sampler.weights == {t: 0.25 for t in TASKS}


def test_weighted_draws_follow_the_weights_and_are_reproducible(compose) -> None:
    module = _module(compose, "algo.task_sampler=improvement")
    state = module.task_sampler.state_dict()
    module.task_sampler.load_state_dict({**state, "weights": [0.5, 0.1, 0.1, 0.3]})
    records = module._draw_records(20, 0)
    counts = {t: sum(r["task"] == t for r in records) for t in TASKS}
    assert counts == {"extraction": 10, "insights": 2, "push": 2, "sql_qa": 6}  # largest remainder: exact shares
    assert [r["id"] for r in module._draw_records(20, 0)] == [r["id"] for r in records]
    assert [r["id"] for r in module._draw_records(20, 1)] != [r["id"] for r in records]


def test_sampler_state_survives_a_checkpoint(compose) -> None:
    module = _module(compose, "algo.task_sampler=improvement", "algo.sampler.update_interval=1")
    module._update_task_sampler(_rows({t: 0.0 for t in TASKS}))
    module._trainer.global_step = 10
    module._update_task_sampler(_rows({"extraction": 0.3, "insights": 0.0, "push": 0.0, "sql_qa": 0.0}))
    checkpoint: dict[str, object] = {}
    module.on_save_checkpoint(checkpoint)
    fresh = _module(compose, "algo.task_sampler=improvement", "algo.sampler.update_interval=1")
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.task_sampler.weights == module.task_sampler.weights != {t: 0.25 for t in TASKS}
    assert fresh.task_sampler.state_dict() == module.task_sampler.state_dict()
    wrong_kind = _module(compose, "algo.task_sampler=mt_grpo")
    with pytest.raises(InputError, match="saved for kind 'improvement'"):
        wrong_kind.on_load_checkpoint(checkpoint)


def test_every_training_task_needs_eval_prompts() -> None:
    train = [{"task": "a"}, {"task": "b"}]
    algo = load_group("algo", "grpo", task_sampler="improvement", sampler={"update_interval": 1})
    with pytest.raises(InputError, match="algo.task_sampler: task.* b have no eval prompts"):
        task_sampler_from_config(algo, train, [{"task": "a"}])
    assert task_sampler_from_config(replace(algo, task_sampler="none"), train, []) is None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["improvement", "mt_grpo"])
def test_sampler_weights_are_logged_and_checkpointed_in_a_real_run(compose, tmp_path: Path, kind: str) -> None:
    overrides = [*COMMERCE_GRPO, f"algo.task_sampler={kind}", "algo.sampler.update_interval=1",
                 "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1"]
    run(compose(overrides, fast=False), overrides=overrides)
    (run_dir,) = [p.parent for p in (tmp_path / "outputs").rglob("metadata.json")]
    assert read_json(run_dir / "summary.json")["status"] == "finished"
    history = read_history(run_dir / "history.jsonl")
    series = {t: history[f"sampler/{t}_weight"] for t in TASKS}
    steps = [s for s, _ in series["extraction"]]
    assert steps == [1, 2, 3, 4]  # logged at the optimizer steps done (docs/metrics.md, Steps)
    for i in range(len(steps)):
        assert sum(series[t][i][1] for t in TASKS) == pytest.approx(1.0, abs=1e-9)
    if kind == "mt_grpo":
        assert all(f"sampler/{t}_zero_grad_rate" in history for t in TASKS)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = saved["aegir_grpo"]["task_sampler"]
    assert state["kind"] == kind and state["tasks"] == TASKS
    assert state["last_step"] == 4  # baseline at the step-0 eval, updates at the evals of steps 2 and 4
    assert sum(state["weights"]) == pytest.approx(1.0, abs=1e-9)
    if kind == "improvement":  # replaying the logged per-task eval rewards gives the checkpointed weights
        from aegir.rl.task_sampler import build_task_sampler

        replay = build_task_sampler("improvement", TASKS, update_interval=1)
        evals = {t: history[f"eval/{t}/reward"] for t in TASKS}
        for i, step in enumerate([0, 2, 4]):
            replay.update(step, {t: evals[t][i][1] for t in TASKS})
        assert state["weights"] == pytest.approx(list(replay.weights.values()), abs=1e-6)

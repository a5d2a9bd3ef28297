"""The end of a stage and of a run: score the best checkpoint, evaluate the gates, write summary.json, say where
the results are, and fail the run when a required gate failed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from aegir.errors import DivergedError, GateFailedError
from aegir.eval.gates import evaluate_gates, gate_metrics
from aegir.observe.tensorboard import FINAL_RUN, end_session, key_hparams, replicate_group, start_session
from aegir.run.directory import is_rank_zero
from aegir.rundir import HistoryWriter, RunPaths, read_history, write_json_atomic

log = logging.getLogger("aegir")


@dataclass
class StageResult:
    """What a stage (or a whole multi-stage run) leaves: its directory, objective value and summary.json."""

    paths: RunPaths
    objective: float
    summary: dict[str, Any] = field(default_factory=dict)


def finalize_stage(cfg: DictConfig, paths: RunPaths, module: Any, step: int, started: float,
                   pending_last: Path | None = None) -> dict[str, Any]:
    """Score the best checkpoint with the loop's own final evaluation, evaluate gates, write summary.json.
    `pending_last` (the staged final weights, `save_final_weights`) becomes last.ckpt once the final score is finite."""
    evaluated = "final weights"
    if paths.best_ckpt.is_file():
        state = torch.load(paths.best_ckpt, map_location="cpu", weights_only=True)["state_dict"]
        # A LoRA policy's checkpoint holds its adapter only (strict_loading False); the base is already in place.
        module.load_state_dict(state, strict=getattr(module, "strict_loading", True))
        evaluated = str(paths.best_ckpt)
        policy = getattr(module, "lm", None)
        if policy is not None and policy.save_pretrained(paths.checkpoints / "best"):
            log.info("best checkpoint exported to %s", paths.checkpoints / "best")
    final, final_stats = module.final_metrics()
    metrics: dict[str, float] = dict(final)
    history = read_history(paths.history)
    for name in ("train/loss", "train/bpb"):
        if history.get(name):
            metrics[name] = history[name][-1][1]
    if history.get("perf/bytes_per_s"):
        values = [v for _, v in history["perf/bytes_per_s"]]
        metrics["perf/bytes_per_s"] = float(sum(values) / len(values))
    verdicts = evaluate_gates(cfg.gates, metrics)
    gate_values = gate_metrics(verdicts)
    if gate_values:  # history.jsonl only: in TensorBoard one point per gate would be a chart each (issue 16)
        writer = HistoryWriter(paths.history)
        writer.write(step, gate_values)
        writer.close()
    objective_value = metrics.get(cfg.objective.metric, math.nan)
    if cfg.objective.metric in metrics and not math.isfinite(objective_value):  # diverged: `failed`, not finished
        raise DivergedError(f"{cfg.objective.metric} is {objective_value} on the final evaluation (step {step})")
    if pending_last is not None and pending_last.is_file():
        os.replace(pending_last, paths.last_ckpt)
    if evaluated == "final weights" and paths.last_ckpt.is_file():
        evaluated = f"final weights ({paths.last_ckpt})"
    summary = {
        "status": "finished",
        "objective": {"metric": cfg.objective.metric, "mode": cfg.objective.mode, "value": objective_value},
        "metrics": metrics,
        "metric_stats": final_stats,
        "evaluated_checkpoint": evaluated,
        "gates": {name: v.as_dict() for name, v in verdicts.items()},
        "gates_passed": all(v.passed for v in verdicts.values()),
        "gates_required": bool(cfg.gates.get("required", False)),
        "steps": step,
        "wall_time_s": round(time.time() - started, 3),
        "checkpoints": {"best": str(paths.best_ckpt) if paths.best_ckpt.is_file() else None,
                        "last": str(paths.last_ckpt) if paths.last_ckpt.is_file() else None},
    }
    if (paths.root / "observe").is_dir():  # the observatory's stability alarms (docs/observatory.md)
        from aegir.observe.observatory import stability_summary

        summary["stability"] = stability_summary(paths.root / "observe")
    if getattr(module, "reward_errors", None) is not None:  # GRPO: {"count", "first"} reward errors (issue 19)
        summary["reward_errors"] = dict(module.reward_errors)
    write_json_atomic(paths.summary, summary)
    end_hparams_session(paths, "finished", metrics, step, cfg.objective.metric)
    return summary


def start_hparams_session(cfg: DictConfig, paths: RunPaths, overrides: Sequence[str],
                          extra_metadata: dict[str, Any] | None) -> None:
    """The run's HParams row, written when training starts (aegir/observe/tensorboard.py): the hyperparameters
    that matter -- identity, swept parameters, overrides -- grouped with the other seeds of its configuration."""
    if not paths.tb.is_dir():
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    swept = ((extra_metadata or {}).get("trial") or {}).get("params")
    start_session(paths.tb, key_hparams(config, overrides, swept), replicate_group(config, overrides, swept))


def end_hparams_session(paths: RunPaths, status: str, metrics: dict[str, float] | None = None, step: int = 0,
                        objective: str | None = None) -> None:
    """The end status of the run's HParams row and, when it finished, its final headline metrics."""
    if (paths.tb / FINAL_RUN).is_dir():
        end_session(paths.tb, status, metrics, step, objective)


def report(result: StageResult) -> None:
    """Say where the results are: every command ends by saying so (final metrics with CIs, gates, TensorBoard)."""
    if not is_rank_zero():
        return
    lines = [f"run directory: {result.paths.root}"]
    # The final metrics are the best checkpoint's scores on the split that selected it (validation / eval set):
    # say so, rather than "final", which reads like the last step's value on held-out data.
    scored = "best.ckpt" if result.summary.get("checkpoints", {}).get("best") else "final weights"
    for name, stats in result.summary.get("metric_stats", {}).items():
        label = name if "/" in name else ("eval/reward" if name == "all" else f"eval/{name}/reward")
        lines.append(f"{label} of {scored} (on the split that selected it): {stats['mean']:.4f} ± "
                     f"{stats['ci95']:.4f} (95% CI, n={stats['n']})")
    objective = result.summary.get("objective", {})
    lines.append(f"objective {objective.get('metric')}: {objective.get('value')}")
    for name, verdict in result.summary.get("gates", {}).items():
        lines.append(f"gate {name}: {'PASS' if verdict['passed'] else 'FAIL'} ({verdict['reason']})")
    lines.append(f"tensorboard --logdir {result.paths.root}")
    for line in lines:
        print(line, flush=True)


def raise_if_required_gates_failed(result: StageResult) -> None:
    """Under `gates.required=true`, a failed gate fails the run -- after everything above was written."""
    if result.summary.get("gates_required") and not result.summary.get("gates_passed", True):
        failed = [n for n, v in result.summary.get("gates", {}).items() if not v["passed"]]
        raise GateFailedError(f"required gate(s) failed: {', '.join(failed)} (details in {result.paths.summary})")

"""run(cfg) -> objective: build everything a config describes, fit, evaluate, gate, and write the run directory.

`run.py` (Hydra) and the sweep driver both call `run`. One stage by default; `stages:` chains several, each in its
own sub-directory, a stage initialised from an earlier stage's best checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from aegir import hydra_resolvers
from aegir.config import validate
from aegir.errors import GateFailedError, InputError
from aegir.eval.gates import evaluate_gates, gate_metrics
from aegir.rundir import (HistoryWriter, RunPaths, config_hash, git_state, hardware, package_versions, read_history,
                          read_json, update_json, write_json_atomic)

log = logging.getLogger("aegir")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@dataclass
class StageResult:
    paths: RunPaths
    objective: float
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- entry
def run(cfg: DictConfig, overrides: Sequence[str] | None = None, *, run_dir: Path | None = None,
        callbacks: Sequence[Any] = (), extra_metadata: dict[str, Any] | None = None) -> float:
    """Run the experiment a composed config describes; return its objective value.

    `overrides` are the command-line overrides the config was composed with (read from Hydra when omitted);
    multi-stage experiments re-compose each stage from them plus the stage's own overrides. Drivers such as the
    sweep pass their own `run_dir`, extra Lightning `callbacks` (pruning) and `extra_metadata` (the trial).
    """
    hydra_resolvers.register()
    run_dir = Path(run_dir) if run_dir is not None else _run_dir(cfg)
    extras = {"callbacks": list(callbacks), "extra_metadata": dict(extra_metadata or {})}
    try:
        cfg = validate(cfg)
        if overrides is None:
            overrides = _hydra_overrides()
        if cfg.audit.required:  # a reward that disagrees with people is not worth optimising (aegir/audit.py)
            from aegir.audit import check_audit
            from aegir.audit_generate import sheet_path

            verdict = check_audit(sheet_path(cfg), float(cfg.audit.min_rho), required=True)
            if not verdict.passed:
                raise InputError(f"audit.required: refusing to train: {verdict.reason}")
            log.info("reward audit: %s", verdict.reason)
        if cfg.stages:
            result = _run_stages(cfg, list(overrides), RunPaths(run_dir), **extras)
        else:
            result = run_single(cfg, RunPaths(run_dir), overrides=list(overrides), **extras)
    except InputError:
        _remove_leftovers(run_dir)
        raise
    _report(result)
    if result.summary.get("gates_required") and not result.summary.get("gates_passed", True):
        failed = [n for n, v in result.summary.get("gates", {}).items() if not v["passed"]]
        raise GateFailedError(f"required gate(s) failed: {', '.join(failed)} (details in {result.paths.summary})")
    return result.objective


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _run_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S.%f")
    root = OmegaConf.select(cfg, "paths.output_root", default="outputs")
    name = OmegaConf.select(cfg, "name", default="run")
    return Path(root) / "runs" / f"{stamp}-{hydra_resolvers._uid()}_{name}_seed{cfg.get('seed', 0)}"


def _remove_leftovers(run_dir: Path) -> None:
    """After a config/input error, remove what Hydra wrote for this run (.hydra/, run.log) so no directory
    that looks like a run is left behind. Never touches a directory that already holds a run."""
    if not run_dir.is_dir() or (run_dir / "metadata.json").exists():
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    for log_file in run_dir.glob("*.log"):
        log_file.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty: something else lives there (e.g. hydra.run.dir=.)


def _is_rank_zero() -> bool:
    """Before the Trainer exists, DDP ranks > 0 (launched by Lightning) are recognised by their environment."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0 and \
        int(os.environ.get("NODE_RANK", "0")) == 0


def _single_log_stream() -> None:
    """Under Hydra the root logger already prints (and writes run.log): drop Lightning's own console handlers so
    each message appears once."""
    if logging.getLogger().handlers:
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------- one stage
def run_single(cfg: DictConfig, paths: RunPaths, *, overrides: Sequence[str] = (),
               parent: dict[str, Any] | None = None, stage: dict[str, Any] | None = None,
               callbacks: Sequence[Any] = (), extra_metadata: dict[str, Any] | None = None) -> StageResult:
    """Fit, evaluate and gate one stage in `paths`. Every input check happens before metadata.json exists."""
    import lightning as L

    from aegir.loops.factory import build_stage

    started = time.time()
    _single_log_stream()
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    resume_from = None
    if cfg.resume and paths.last_ckpt.is_file():
        resume_from = paths.last_ckpt
    elif cfg.resume:
        raise InputError(f"resume: no checkpoint to resume from at {paths.last_ckpt}")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    log.info("preparing task=%s arm=%s data_seed=%d", cfg.task.name, cfg.arm.name, cfg.data_seed)
    built = build_stage(cfg, paths)
    n_params = built.n_parameters
    log.info("model %s (%s): %s parameters", cfg.model.name, cfg.model.arch, f"{n_params:,}")

    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    if _is_rank_zero():
        previous = read_json(paths.metadata) if resume_from and paths.metadata.exists() else {}
        write_json_atomic(paths.metadata, {
            "run_id": paths.root.name, "run_dir": str(paths.root), "name": cfg.name, "status": "running",
            "started_at": previous.get("started_at", _now()), "resumed_at": _now() if resume_from else None,
            "ended_at": None, "seed": cfg.seed, "data_seed": cfg.data_seed, "arm": cfg.arm.name,
            "tags": list(cfg.tags), "notes": cfg.notes, "stage": stage, "parent": parent,
            "model": {"arch": cfg.model.arch, "name": cfg.model.name, "n_parameters": n_params},
            "data": built.provenance, "config": resolved, "config_hash": config_hash(resolved),
            "overrides": list(overrides), "command": sys.argv, "git": git_state(), "versions": package_versions(),
            "hardware": hardware(), "trial": None, **(extra_metadata or {}),
        })

    module = built.module
    try:
        trainer = build_trainer(cfg, paths, module, extra_callbacks=callbacks)
        if _is_rank_zero() and trainer.loggers:
            _log_config_text(trainer, cfg)
        trainer.fit(module, ckpt_path=str(resume_from) if resume_from else None)
        if trainer.global_rank != 0:
            return StageResult(paths, math.nan)
        summary = _finalize(cfg, paths, module, trainer.global_step, started)
    except BaseException as err:
        if _is_rank_zero() and paths.metadata.exists():
            status = "pruned" if type(err).__name__ == "TrialPruned" else "failed"  # optuna's pruning signal
            update_json(paths.metadata, status=status, ended_at=_now(), reason=f"{type(err).__name__}: {err}".strip())
        raise
    update_json(paths.metadata, status="finished", ended_at=_now(), duration_s=round(time.time() - started, 3))
    return StageResult(paths, summary["objective"]["value"], summary)


def build_trainer(cfg: DictConfig, paths: RunPaths, module: Any, extra_callbacks: Sequence[Any] = ()) -> Any:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from aegir.observe.history_logger import HistoryLogger
    from aegir.observe.callbacks import ParamSyncCheck, ThreadsPerProcess
    from aegir.rundir import TB_DIR

    ckpt = cfg.callbacks.checkpoint
    callbacks: list[Any] = [ModelCheckpoint(
        dirpath=paths.checkpoints, filename="best", monitor=ckpt.monitor, mode=ckpt.mode, save_top_k=1,
        save_last=False, auto_insert_metric_name=False, enable_version_counter=False)]
    if ckpt.save_last:
        # Lightning >= 2.5 refreshes a monitored callback's last.ckpt only when best.ckpt was saved at the same step,
        # which would leave resume at the last *improvement*; an unmonitored callback rewrites it at every eval.
        callbacks.append(ModelCheckpoint(dirpath=paths.checkpoints, filename="last", monitor=None, save_top_k=1,
                                         save_last=False, auto_insert_metric_name=False,
                                         enable_version_counter=False))
    show_bar = cfg.trainer.enable_progress_bar and cfg.callbacks.progress_bar != "none"
    if show_bar:
        callbacks.append(RichProgressBar() if cfg.callbacks.progress_bar == "rich" else TQDMProgressBar())
    callbacks.append(ParamSyncCheck())
    callbacks.extend(extra_callbacks)
    if cfg.trainer.num_threads:
        callbacks.append(ThreadsPerProcess(int(cfg.trainer.num_threads)))
    loggers: list[Any] = [HistoryLogger(paths.history)]
    if cfg.logger.tensorboard.enabled:
        loggers.append(TensorBoardLogger(save_dir=str(paths.root), name="", version=TB_DIR,
                                         default_hp_metric=False))
    accumulate = cfg.trainer.accumulate_grad_batches
    return L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, precision=cfg.trainer.precision, max_steps=cfg.trainer.max_steps,
        # The training iterable is endless: validate every N *optimizer* steps, counted in micro-batches.
        val_check_interval=cfg.trainer.val_check_interval * accumulate, check_val_every_n_epoch=None,
        log_every_n_steps=cfg.trainer.log_every_n_steps, accumulate_grad_batches=accumulate,
        # Loops with manual optimisation (GRPO) clip inside their own update.
        gradient_clip_val=(cfg.algo.grad_clip or None) if module.automatic_optimization else None,
        deterministic=cfg.trainer.deterministic,
        enable_progress_bar=show_bar, enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False, callbacks=callbacks, logger=loggers, default_root_dir=str(paths.root))


def _log_config_text(trainer: Any, cfg: DictConfig) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            text = "```yaml\n" + OmegaConf.to_yaml(cfg) + "\n```"
            logger.experiment.add_text("config", text, global_step=0)


def _finalize(cfg: DictConfig, paths: RunPaths, module: Any, step: int, started: float) -> dict[str, Any]:
    """Score the best checkpoint with the loop's own final evaluation, evaluate gates, write summary.json."""
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
    if gate_values:
        writer = HistoryWriter(paths.history)
        writer.write(step, gate_values)
        writer.close()
        _log_tensorboard(paths, gate_values, step)
    objective_value = metrics.get(cfg.objective.metric, math.nan)
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
    write_json_atomic(paths.summary, summary)
    if paths.tb.is_dir():
        from aegir.observe.tensorboard import replicate_group, write_hparams

        config = OmegaConf.to_container(cfg, resolve=True)
        write_hparams(paths.tb, config, metrics, replicate_group(config))  # type: ignore[arg-type]
    return summary


def _log_tensorboard(paths: RunPaths, scalars: dict[str, float], step: int) -> None:
    if not paths.tb.is_dir():
        return
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(paths.tb)) as writer:
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)


# --------------------------------------------------------------------------------------------------- stages
def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose conf/config.yaml with overrides, inside the running Hydra app or standalone."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    hydra_resolvers.register()
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def stage_overrides(overrides: Sequence[str], spec: Any) -> list[str]:
    """A stage's overrides: the run's, then the stage's own, then `stages.<name>.set` (which wins over both, so a
    command line or a sweep can change one stage's setting: `++stages.grpo.set.algo.lr=1e-4`)."""
    return [*overrides, *spec.overrides, *(f"{k}={_override_value(v)}" for k, v in _flatten_set(spec.set))]


def _flatten_set(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) or OmegaConf.is_dict(node):
        return [kv for k, v in node.items() for kv in _flatten_set(v, f"{prefix}{k}.")]
    return [(prefix[:-1], node)]


def _override_value(value: Any) -> str:
    """A Python value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    text = str(value)
    if text and all(c.isalnum() or c in "_-./:" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run_stages(cfg: DictConfig, overrides: list[str], paths: RunPaths, callbacks: Sequence[Any] = (),
                extra_metadata: dict[str, Any] | None = None) -> StageResult:
    """Run `cfg.stages` in order. Every stage config is composed and validated before the first one starts."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    planned: list[tuple[str, Any, DictConfig]] = []
    for name, spec in cfg.stages.items():
        try:
            raw = compose_config(stage_overrides(overrides, spec))
        except (HydraException, OmegaConfBaseException) as err:
            raise InputError(f"config error: stages.{name}.overrides: {str(err).splitlines()[0]}") from None
        with open_dict(raw):
            raw.stages = {}
            raw.resume = cfg.resume
        planned.append((name, spec, validate(raw)))

    fresh = not cfg.resume or not paths.metadata.exists()
    if fresh:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        write_json_atomic(paths.metadata, {
            "run_id": paths.root.name, "run_dir": str(paths.root), "name": cfg.name, "status": "running",
            "kind": "multi_stage", "started_at": _now(), "ended_at": None, "seed": cfg.seed,
            "data_seed": cfg.data_seed, "tags": list(cfg.tags),
            "stages": [{"index": i, "name": n, "dir": str(paths.stage(i, n).root)}
                       for i, (n, _, _) in enumerate(planned, 1)],
            "config": resolved, "config_hash": config_hash(resolved), "overrides": overrides,
            "command": sys.argv, "git": git_state(), "versions": package_versions(), "hardware": hardware(),
            **(extra_metadata or {}),
        })
    results: dict[str, StageResult] = {}
    previous: str | None = None
    try:
        for index, (name, spec, stage_cfg) in enumerate(planned, 1):
            stage_paths = paths.stage(index, name)
            parent = None
            source = previous if spec.init_from == "previous" else spec.init_from
            if source:
                best = results[source].paths.best_ckpt
                stage_cfg.model.pretrained = str(best)
                parent = {"stage": source, "checkpoint": str(best), "run_dir": str(results[source].paths.root)}
            finished = stage_paths.summary.is_file() and read_json(stage_paths.summary).get("status") == "finished"
            if cfg.resume and finished:
                summary = read_json(stage_paths.summary)
                results[name] = StageResult(stage_paths, summary["objective"]["value"], summary)
            else:
                stage_cfg.resume = bool(cfg.resume and stage_paths.last_ckpt.is_file())
                log.info("stage %d/%d: %s -> %s", index, len(planned), name, stage_paths.root)
                results[name] = run_single(stage_cfg, stage_paths, overrides=stage_overrides(overrides, spec),
                                           parent=parent, stage={"index": index, "name": name},
                                           callbacks=callbacks, extra_metadata=extra_metadata)
            previous = name
    except InputError:
        started = any(paths.stage(i, n).metadata.exists() for i, (n, _, _) in enumerate(planned, 1))
        if fresh and not started:  # bad input before any stage began (e.g. a model that cannot be loaded): no run
            paths.metadata.unlink(missing_ok=True)
            shutil.rmtree(paths.root / "stages", ignore_errors=True)
        else:
            update_json(paths.metadata, status="failed", ended_at=_now(), reason="InputError")
        raise
    except BaseException as err:
        update_json(paths.metadata, status="failed", ended_at=_now(), reason=f"{type(err).__name__}: {err}")
        raise
    last = results[planned[-1][0]]
    summary = {
        "status": "finished",
        "objective": last.summary["objective"],
        "metrics": last.summary["metrics"],
        # The last stage's within-run CIs, so the run's own summary (and _report) carries them like a one-stage run.
        "metric_stats": last.summary.get("metric_stats", {}),
        "wall_time_s": round(sum(float(r.summary.get("wall_time_s", 0.0)) for r in results.values()), 3),
        "gates": {f"{n}/{g}": v for n, r in results.items() for g, v in r.summary.get("gates", {}).items()},
        "gates_passed": all(r.summary.get("gates_passed", True) for r in results.values()),
        "gates_required": any(r.summary.get("gates_required", False) for r in results.values()),
        "stages": {n: {"dir": str(r.paths.root), "objective": r.summary["objective"],
                       "metrics": r.summary["metrics"], "metric_stats": r.summary.get("metric_stats", {}),
                       "wall_time_s": r.summary.get("wall_time_s"), "gates_passed": r.summary.get("gates_passed", True)}
                   for n, r in results.items()},
    }
    write_json_atomic(paths.summary, summary)
    update_json(paths.metadata, status="finished", ended_at=_now())
    return StageResult(paths, last.objective, summary)


def _report(result: StageResult) -> None:
    """Say where the results are (DESIGN.md §1: every command ends by saying so)."""
    if not _is_rank_zero():
        return
    lines = [f"run directory: {result.paths.root}"]
    for name, stats in result.summary.get("metric_stats", {}).items():
        label = name if "/" in name else ("eval/reward" if name == "all" else f"eval/{name}/reward")
        lines.append(f"final {label}: {stats['mean']:.4f} ± {stats['ci95']:.4f} (95% CI, n={stats['n']})")
    objective = result.summary.get("objective", {})
    lines.append(f"objective {objective.get('metric')}: {objective.get('value')}")
    for name, verdict in result.summary.get("gates", {}).items():
        lines.append(f"gate {name}: {'PASS' if verdict['passed'] else 'FAIL'} ({verdict['reason']})")
    lines.append(f"tensorboard --logdir {result.paths.root}")
    for line in lines:
        print(line, flush=True)

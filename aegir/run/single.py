"""One stage: seed, build the loop a config describes, write metadata.json, fit, and finalize.

Every input check happens before metadata.json exists, so a bad input leaves no directory that looks like a run.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from aegir.errors import DivergedError, InputError
from aegir.run.checkpoints import check_resumable
from aegir.run.directory import is_rank_zero, mark_ended, now, run_metadata
from aegir.run.summary import StageResult, end_hparams_session, finalize_stage, start_hparams_session
from aegir.run.trainer import build_trainer, log_config_text, save_final_weights, single_log_stream
from aegir.rundir import RunPaths, read_json, write_json_atomic

log = logging.getLogger("aegir")


def run_single(cfg: DictConfig, paths: RunPaths, *, overrides: Sequence[str] = (),
               parent: dict[str, Any] | None = None, stage: dict[str, Any] | None = None,
               callbacks: Sequence[Any] = (), extra_metadata: dict[str, Any] | None = None) -> StageResult:
    """Fit, evaluate and gate one stage in `paths`. Every input check happens before metadata.json exists."""
    # Lightning and the loops (which import it) load only once a stage runs, so config errors exit without them.
    import lightning as L

    from aegir.loops.factory import build_stage
    from aegir.run.divergence import NonFiniteGuard

    started = time.time()
    single_log_stream()
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    resume_from = None
    if cfg.resume and paths.last_ckpt.is_file():
        check_resumable(paths.last_ckpt)
        resume_from = paths.last_ckpt
    elif cfg.resume:
        raise InputError(f"resume: no checkpoint to resume from at {paths.last_ckpt}")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    log.info("preparing task=%s arm=%s data_seed=%d", cfg.task.name, cfg.arm.name, cfg.data_seed)
    built = build_stage(cfg, paths)
    n_params = built.n_parameters
    log.info("model %s (%s): %s parameters", cfg.model.name, cfg.model.arch, f"{n_params:,}")

    if is_rank_zero():
        previous = read_json(paths.metadata) if resume_from and paths.metadata.exists() else {}
        write_json_atomic(paths.metadata, run_metadata(paths, cfg, overrides, kind={
            "started_at": previous.get("started_at", now()), "resumed_at": now() if resume_from else None,
            "ended_at": None, "seed": cfg.seed, "data_seed": cfg.data_seed, "arm": cfg.arm.name,
            "tags": list(cfg.tags), "notes": cfg.notes, "stage": stage, "parent": parent,
            "model": {"arch": cfg.model.arch, "name": cfg.model.name, "n_parameters": n_params},
            "data": built.provenance,
        }, extra={"trial": None, **(extra_metadata or {})}))

    module = built.module
    pending_last = None
    try:
        trainer = build_trainer(cfg, paths, module, extra_callbacks=callbacks)
        if is_rank_zero() and trainer.loggers:
            log_config_text(trainer, cfg)
            start_hparams_session(cfg, paths, overrides, extra_metadata)
        trainer.fit(module, ckpt_path=str(resume_from) if resume_from else None, weights_only=True)
        guard = next(c for c in trainer.callbacks if isinstance(c, NonFiniteGuard))
        if guard.reason is not None:  # trainer.stop_on_nonfinite=false: it ran on to the end, and still diverged
            raise DivergedError(guard.reason)
        guard.check_weights(trainer, module)
        pending_last = save_final_weights(trainer, paths)
        if trainer.global_rank != 0:
            return StageResult(paths, math.nan)
        summary = finalize_stage(cfg, paths, module, trainer.global_step, started, pending_last)
    except BaseException as err:
        if is_rank_zero() and pending_last is not None:
            pending_last.unlink(missing_ok=True)  # a diverged final state never replaces the last good checkpoint
        if is_rank_zero() and paths.metadata.exists():
            status = "pruned" if type(err).__name__ == "TrialPruned" else "failed"  # optuna's pruning signal
            mark_ended(paths, status, reason=f"{type(err).__name__}: {err}".strip())
            end_hparams_session(paths, status)
        raise
    mark_ended(paths, "finished", duration_s=round(time.time() - started, 3))
    return StageResult(paths, summary["objective"]["value"], summary)

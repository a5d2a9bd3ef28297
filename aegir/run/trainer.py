"""The Lightning Trainer a config describes: checkpoints, progress bar, loggers, and the step arithmetic.

Lightning is imported inside the functions, not at the top: `aegir.main` imports this module, and a config error
should exit before the seconds that importing Lightning takes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from aegir.rundir import TB_DIR, RunPaths


def build_trainer(cfg: DictConfig, paths: RunPaths, module: Any, extra_callbacks: Sequence[Any] = ()) -> Any:
    """A `lightning.Trainer` writing checkpoints, history and TensorBoard events into `paths`."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

    # these import Lightning (see the docstring)
    from aegir.observe.callbacks import ParamSyncCheck, StepAxis, ThreadsPerProcess, log_friendly_progress_bar
    from aegir.observe.history_logger import HistoryLogger, StepAxisTensorBoardLogger
    from aegir.run.atomic_io import AtomicCheckpointIO
    from aegir.run.divergence import NonFiniteGuard

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
        callbacks.append(RichProgressBar() if cfg.callbacks.progress_bar == "rich" else log_friendly_progress_bar())
    callbacks.append(ParamSyncCheck())
    callbacks.append(StepAxis())  # every logger at trainer.global_step (aegir/observe/history_logger.py)
    callbacks.append(NonFiniteGuard(ckpt.monitor, stop=cfg.trainer.stop_on_nonfinite))
    if cfg.callbacks.observatory.enabled:  # learning-dynamics instruments (docs/observatory.md)
        from aegir.observe.observatory_callback import ObservatoryCallback

        callbacks.append(ObservatoryCallback.from_config(cfg, paths))
    callbacks.extend(extra_callbacks)
    if cfg.trainer.num_threads:
        callbacks.append(ThreadsPerProcess(int(cfg.trainer.num_threads)))
    loggers: list[Any] = [HistoryLogger(paths.history)]
    if cfg.logger.tensorboard.enabled:
        loggers.append(StepAxisTensorBoardLogger(save_dir=str(paths.root), name="", version=TB_DIR,
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
        use_distributed_sampler=False, callbacks=callbacks, logger=loggers, default_root_dir=str(paths.root),
        plugins=[AtomicCheckpointIO()])


def save_final_weights(trainer: Any, paths: RunPaths) -> Path | None:
    """Write the final weights, staged as checkpoints/last.ckpt.pending; `finalize_stage` puts them in place as
    last.ckpt once the final score is finite (the loss and the weights were checked before), so a run ends with its
    final weights on disk.

    ModelCheckpoint writes only at validations, so a run whose max_steps is shorter than (or not a multiple of)
    the validation interval would otherwise lose the weights it trained last -- those its summary scores when it
    never validated -- and could be neither resumed nor fine-tuned from. Staging keeps a diverged run from
    replacing the last good checkpoint with NaN-producing weights. Called on every rank (the save is collective
    under DDP); None when `callbacks.checkpoint.save_last` is off or the last validation already wrote this step."""
    last = [cb for cb in trainer.checkpoint_callbacks if getattr(cb, "filename", None) == "last"]
    if not last or getattr(last[0], "_last_global_step_saved", -1) == trainer.global_step:
        return None
    pending = paths.last_ckpt.with_name(paths.last_ckpt.name + ".pending")
    trainer.save_checkpoint(str(pending), weights_only=False)
    return pending


def log_config_text(trainer: Any, cfg: DictConfig) -> None:
    """The resolved config (interpolations such as `${objective.metric}` replaced by their values) as a YAML text
    panel in TensorBoard."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            text = "```yaml\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```"
            logger.experiment.add_text("config", text, global_step=0)


class _NoAdvertisement(logging.Filter):
    """Lightning >= 2.5 prints a "litlogger" tip at every Trainer start: not a message about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


def single_log_stream() -> None:
    """Under Hydra the root logger already prints (and writes run.log): drop Lightning's own console handlers (on
    `lightning`, `lightning.pytorch` and `lightning.fabric`) so each message appears once, and its litlogger tip."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        source = logging.getLogger(name)
        if not any(isinstance(f, _NoAdvertisement) for f in source.filters):
            source.addFilter(_NoAdvertisement())

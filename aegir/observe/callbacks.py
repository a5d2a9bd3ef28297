"""Small Lightning callbacks of the run plumbing."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback


class ThreadsPerProcess(Callback):
    """Set torch's intra-op threads in every training process, spawned DDP workers included: two 2-thread
    processes on a 2-core machine oversubscribe it and run many times slower than two 1-thread processes."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        torch.set_num_threads(self.threads)


class ParamSyncCheck(Callback):
    """Under DDP, record at the end of training how far the ranks' parameters drifted apart
    (`ddp/param_max_abs_diff`, 0.0 when gradients were all-reduced correctly). A no-op on one process."""

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.world_size < 2:
            return
        flat = torch.cat([p.detach().float().reshape(-1) for p in pl_module.parameters()])
        gathered = trainer.strategy.all_gather(flat)
        drift = float((gathered - gathered[0:1]).abs().max())
        for logger in trainer.loggers:
            logger.log_metrics({"ddp/param_max_abs_diff": drift}, step=trainer.global_step)


class StepAxis(Callback):
    """Give the run's loggers (aegir.observe.history_logger) `trainer.global_step` as their step axis, in every
    process (set in `setup`, so nothing unpicklable travels to spawned DDP workers)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        for logger in trainer.loggers:
            if hasattr(logger, "axis_step"):
                logger.step_source = lambda: int(trainer.global_step)


def log_friendly_progress_bar() -> Callback:
    """Lightning's tqdm bar, without the nested validation bar when the output is not a terminal: tqdm moves the
    cursor up (`ESC[A`) to redraw a nested bar, which a log file (run.log, CI, `| tee`) keeps as junk."""
    import sys

    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    class LogFriendlyProgressBar(TQDMProgressBar):
        def init_validation_tqdm(self) -> Tqdm:
            if sys.stdout.isatty():
                return super().init_validation_tqdm()
            return Tqdm(disable=True)

    return LogFriendlyProgressBar()

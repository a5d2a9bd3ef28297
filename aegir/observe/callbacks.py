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


def axis_step(trainer: Any) -> int:
    """The run's step axis inside a training batch or the validation that follows it: the optimizer steps done,
    counted by Lightning's `_batches_that_stepped` (restored exactly on resume), which is only incremented after
    the batch's logging and validation -- hence the + 1."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped) + 1


class StepAxis(Callback):
    """One step axis for every logged scalar (docs/metrics.md, Steps): the optimizer steps done. Lightning logs a
    batch's metrics, and the validation after it, at the count *before* the batch (24 for the 25th step) and adds
    `epoch`; logging a `step` value makes Lightning use it as the step of that logging call (and leave `epoch`
    out), for TensorBoard and history.jsonl alike."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        pl_module.log("step", float(axis_step(trainer)), on_step=True, on_epoch=False, prog_bar=False)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            pl_module.log("step", float(axis_step(trainer)), on_step=False, on_epoch=True, prog_bar=False)


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

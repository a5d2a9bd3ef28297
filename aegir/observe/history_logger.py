"""The run's Lightning loggers, both on one step axis (docs/metrics.md, Steps): `HistoryLogger` appends every logged
scalar to history.jsonl (docs/run_directory.md), `StepAxisTensorBoardLogger` writes tb/.

Lightning logs a training step's metrics, and the validation after it, at its count of batches stepped *before*
the step (24 for the 25th optimizer step) and adds an `epoch` scalar (always 0 here: the training iterable is
endless). Both loggers here log at `trainer.global_step` instead -- the optimizer steps done, restored exactly on
resume, the step of the sample files, of the checkpoints and of the sweep's reports to Optuna -- once
`aegir.observe.callbacks.StepAxis` has given them the trainer, and drop `epoch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from aegir.rundir import HistoryWriter

DROPPED = ("epoch",)


class StepAxisMixin:
    """`step_source` (set by the StepAxis callback in every process) gives the step every metric is logged at;
    without it (a logger used outside a Trainer) the step passed is kept."""

    step_source: Callable[[], int] | None = None

    def axis_step(self, step: int | None) -> int:
        return int(self.step_source()) if self.step_source is not None else int(step or 0)


class HistoryLogger(StepAxisMixin, Logger):
    """Writes on rank zero only; the file is opened lazily so the logger pickles for ddp_spawn."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._writer: HistoryWriter | None = None

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters live in metadata.json and .hydra/config.yaml; nothing to append here."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k not in DROPPED}
        if not metrics:
            return
        if self._writer is None:
            self._writer = HistoryWriter(self.path)
        self._writer.write(self.axis_step(step), {k: float(v) for k, v in metrics.items()})

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_writer"] = None
        state.pop("step_source", None)  # holds the trainer; StepAxis sets it again in each process
        return state


class StepAxisTensorBoardLogger(StepAxisMixin, TensorBoardLogger):
    """Lightning's TensorBoard logger without the `epoch` scalar."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k not in DROPPED}
        if metrics:
            super().log_metrics(metrics, self.axis_step(step))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("step_source", None)
        return state

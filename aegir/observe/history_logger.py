"""The run's Lightning loggers, both on one step axis (docs/metrics.md, Steps): `HistoryLogger` appends every logged
scalar to history.jsonl (docs/run_directory.md), `StepAxisTensorBoardLogger` writes tb/.

Lightning logs a training step's metrics at its count of batches stepped *before* the step (24 for the 25th
optimizer step), and validation there too, and adds an `epoch` scalar. `aegir.observe.callbacks.StepAxis` logs a
`step` value that Lightning then uses as the step (the optimizer steps done, the step of the sample files and of
the sweep's reports to Optuna); both loggers here drop `epoch` and never write `step` as a metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from aegir.rundir import HistoryWriter

DROPPED = ("epoch", "step")


class StepAxisMixin:
    """The step a metric is logged at: the one Lightning passes (StepAxis's `step` value, or an explicit step)."""

    def axis_step(self, step: int | None) -> int:
        return int(step or 0)


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
        return state


class StepAxisTensorBoardLogger(StepAxisMixin, TensorBoardLogger):
    """Lightning's TensorBoard logger on the run's step axis, without `epoch`."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k not in DROPPED}
        if metrics:
            super().log_metrics(metrics, self.axis_step(step))

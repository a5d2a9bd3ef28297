"""The run's Lightning loggers: `HistoryLogger` appends every logged scalar to history.jsonl
(docs/run_directory.md), `StepAxisTensorBoardLogger` writes tb/. Both log at the step Lightning passes
(docs/metrics.md, Steps) and drop Lightning's `epoch` scalar (always 0 here: the training iterable is endless).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from aegir.rundir import HistoryWriter

DROPPED = ("epoch",)


class StepAxisMixin:
    """The step a metric is logged at: the one Lightning (or an explicit caller) passes."""

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
    """Lightning's TensorBoard logger without the `epoch` scalar."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k not in DROPPED}
        if metrics:
            super().log_metrics(metrics, self.axis_step(step))

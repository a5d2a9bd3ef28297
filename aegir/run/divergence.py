"""Catch a diverged run: a NaN or infinite training loss or validation objective makes the run `failed`.

Without this, `python run.py algo.lr=1e6` trained on NaN weights to the end and reported `finished` with a null
objective. The guard looks at the loss every optimizer step and at the checkpoint's monitored metric after every
validation. Lightning runs checkpoint callbacks after all others, so a non-finite validation is caught before a
checkpoint of the diverged weights is written: the checkpoints from before the divergence are what stays.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L

from aegir.errors import DivergedError


def nonfinite_reason(name: str, value: Any, step: int) -> str | None:
    """`"loss is NaN at step 7"` when `value` is a NaN or infinite number, else None."""
    if value is None:
        return None
    number = float(value.detach().float().item()) if hasattr(value, "detach") else float(value)
    if math.isfinite(number):
        return None
    return f"{name} is {'NaN' if math.isnan(number) else number} at step {step}"


class NonFiniteGuard(L.Callback):
    """Stops the run at the first non-finite loss or monitored metric (`trainer.stop_on_nonfinite`), or lets it run
    on to the end and remembers the first one in `reason`, so the run still ends `failed`."""

    def __init__(self, monitor: str, stop: bool) -> None:
        self.monitor = monitor
        self.stop = stop
        self.reason: str | None = None

    def _check(self, trainer: L.Trainer, name: str, value: Any) -> None:
        reason = nonfinite_reason(name, value, trainer.global_step)
        if trainer.world_size > 1:  # every rank must stop together, or the others wait forever in a collective
            if trainer.strategy.reduce_boolean_decision(reason is not None, all=False) and reason is None:
                reason = f"{name} is not finite on another rank at step {trainer.global_step}"
        if reason is None or self.reason is not None:
            return
        self.reason = reason
        if self.stop:
            raise DivergedError(reason)

    def check_weights(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Refuse to end a run whose trained parameters hold NaN or inf: a finite loss can precede them (lr=1e6
        gives a loss of 1e11, then NaN weights), and they must not be saved as the run's last checkpoint."""
        bad = [name for name, p in module.named_parameters() if p.requires_grad and not bool(p.isfinite().all())]
        if bad:
            raise DivergedError(f"weights are not finite at step {trainer.global_step} ({len(bad)} tensors, "
                                f"first {bad[0]})")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # manual optimisation (GRPO) returns nothing and logs its loss
            loss = trainer.callback_metrics.get("train/loss")
        self._check(trainer, "loss", loss)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._check(trainer, self.monitor, trainer.callback_metrics.get(self.monitor))

"""The observatory as a Lightning callback (switched on by `callbacks=observatory`; docs/observatory.md).

What it adds to training, on rank 0 only:
- a baseline snapshot before the first optimizer step of a fresh run (step 0, after a GRPO loop's step-0 eval);
- a snapshot at every validation where a part is due (`callbacks.observatory.<part>.every_n_evals`);
- per-layer gradient norms, averaged over the optimizer steps between snapshots (one fused norm per step);
- the update-to-weight ratio ||W_after - W_before|| / ||W_before|| per layer, of the first optimizer step after
  each snapshot (one copy of the tracked weights, once per snapshot interval);
- at the end of training: observe/learned_order.json and the radar GIF.

Nothing it does draws from the training RNG streams or changes the weights, so a run's metric series are the same
with and without it (tests/integration/test_observatory.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from aegir.observe.config import ObservatoryConfig
from aegir.observe.dynamics_math import group_by_layer
from aegir.observe.observatory import Observatory, Sink, headline
from aegir.observe.readout import tracked_parameters
from aegir.rundir import METADATA, RunPaths, read_history

log = logging.getLogger("aegir")


class ObservatoryCallback(Callback):
    """Drives an `Observatory` from the training loop."""

    def __init__(self, obs: ObservatoryConfig, root: Path, task: Any, data_seed: int) -> None:
        """`obs`: the typed `callbacks.observatory` section; `task`: the typed `task` section."""
        self.obs_cfg, self.root, self.task, self.data_seed = obs, Path(root), task, int(data_seed)
        self.observatory: Observatory | None = None
        self.eval_index = 0
        self._baseline_checked = False
        self._params: dict[str, torch.Tensor] = {}
        self._layer_index: dict[str, int] = {}
        self._layers: list[str] = []
        self._grad_sum: torch.Tensor | None = None
        self._grad_steps = 0
        self._measure_update = True
        self._before: dict[str, torch.Tensor] | None = None
        self._update_ratio: dict[str, float] | None = None

    @classmethod
    def from_config(cls, cfg: Any, paths: RunPaths) -> "ObservatoryCallback":
        from aegir.config.validate import section_object

        return cls(section_object("callbacks", cfg.callbacks).observatory, paths.root,
                   section_object("task", cfg.task), int(cfg.data_seed))

    # ------------------------------------------------------------------ state (checkpointed)
    def state_dict(self) -> dict[str, Any]:
        return {"eval_index": self.eval_index}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.eval_index = int(state_dict.get("eval_index", 0))

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.global_rank != 0:
            return
        self.observatory = Observatory(self.obs_cfg, self.root, self.task, self.data_seed, pl_module)
        self.observatory.prepare(pl_module, int(trainer.global_step), self.root / METADATA)
        self._params = tracked_parameters(pl_module)
        groups = group_by_layer(self._params)
        self._layers = list(groups)
        self._layer_index = {name: i for i, (layer, names) in enumerate(groups.items()) for name in names}
        log.info("observatory: %d probes (%s, sha256 %s…) -> %s/observe/", len(self.observatory.probes),
                 self.observatory.probe_source, self.observatory.probe_sha[:12], self.root)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._baseline_checked or self.observatory is None:
            return
        self._baseline_checked = True
        if int(trainer.global_step) == 0 and not self.observatory.history_rows and self.eval_index == 0:
            step0 = {name: series[0][1] for name, series in read_history(self.root / "history.jsonl").items()
                     if series and series[0][0] == 0}
            self.observatory.snapshot(pl_module, 0, 0, step0, self._sink(trainer))

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.observatory is None or not self.obs_cfg.history.enabled:
            return
        names = [n for n, p in self._params.items() if p.grad is not None]
        if names:
            grads = [self._params[n].grad.detach() for n in names]
            norms = torch.stack(torch._foreach_norm(grads)).double().cpu()
            index = torch.tensor([self._layer_index[n] for n in names])
            sq = torch.zeros(len(self._layers), dtype=torch.float64).index_add_(0, index, norms.pow(2))
            self._grad_sum = sq.sqrt() if self._grad_sum is None else self._grad_sum + sq.sqrt()
            self._grad_steps += 1
        if self._measure_update:
            self._measure_update = False
            self._before = {n: p.detach().to("cpu", torch.float32, copy=True) for n, p in self._params.items()}

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._before is None:
            return
        from aegir.observe.dynamics_math import relative_drift

        after = {n: p.detach().to("cpu", torch.float32) for n, p in self._params.items()}
        self._update_ratio = relative_drift(after, self._before, group_by_layer(self._params))
        self._before = None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self.eval_index += 1
        if self.observatory is None:
            return
        grads = None
        if self._grad_sum is not None and self._grad_steps:
            grads = {layer: float(v) / self._grad_steps for layer, v in zip(self._layers, self._grad_sum.tolist())}
        metrics = headline({k: v for k, v in trainer.callback_metrics.items()})
        done = self.observatory.snapshot(pl_module, int(trainer.global_step), self.eval_index, metrics,
                                         self._sink(trainer), grad_norms=grads, update_ratio=self._update_ratio)
        if done:
            self._grad_sum, self._grad_steps = None, 0
            self._measure_update, self._update_ratio = True, None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.observatory is None:
            return
        alarms = self.observatory.finish(self._sink(trainer))
        if alarms:
            log.warning("observatory: stability alarms raised: %s", ", ".join(sorted(alarms)))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _sink(trainer: Any) -> Sink:
        from lightning.pytorch.loggers import TensorBoardLogger

        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        return Sink(trainer.loggers, writer)

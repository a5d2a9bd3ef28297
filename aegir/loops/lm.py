"""Lightning module for byte-level pretraining (SFT is aegir/loops/sft.py): next-byte cross-entropy.

Only orchestration lives here: the model is any module mapping ids [B, T] to (logits [B, T, V], state), the data
are byte windows from `aegir.tasks.pretrain.windows`, the schedule is a pure function below.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from aegir.config.schema import LMAlgoConfig, OptimConfig, PretrainTaskConfig
from aegir.eval.instrument import (COMMON_KINDS, PROBE_MAX_BYTES, per_kind_window_bpb, probe_metrics,
                                    with_companions)
from aegir.eval.stats import mean_ci
from aegir.observe.tensorboard import EVAL_BANDS, add_band_charts, band, band_bounds
from aegir.tasks.pretrain.instrument import KIND_CODES, EvalWindows, Instrument, ProbeItem
from aegir.tasks.pretrain.windows import RandomWindowBatches

LN2 = math.log(2.0)
log = logging.getLogger("aegir")

# Deprecation notices raised inside Lightning itself (not actionable here); filtered at import so that DDP worker
# processes, which import this module to unpickle the LightningModule, are quiet too.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r".*torch\.distributed\.nn\.functional\.all_gather is deprecated.*")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from 0 to 1 over `warmup_steps`, then cosine decay to `min_ratio` at
    `total_steps` (held there afterwards)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, w0_lr_mult: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices only (not norms, biases, token-shift mixes or embeddings, as in
    the RWKV recipe); the RWKV-7 decay bias `w0` at `w0_lr_mult` x lr."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, w0 = [], [], []
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if name.rsplit(".", 1)[-1] == "w0":
            w0.append(param)
        elif param.ndim >= 2 and id(param) not in embedding_ids:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": lr},
              {"params": w0, "weight_decay": 0.0, "lr": lr * w0_lr_mult}]
    return [g for g in groups if g["params"]]


def adamw_with_schedule(model: nn.Module, algo: OptimConfig, total_steps: int) -> dict[str, Any]:
    """AdamW over `parameter_groups` with the warm-up/cosine schedule of the algo config: the optimiser of every
    loop."""
    groups = parameter_groups(model, algo.lr, algo.weight_decay, algo.w0_lr_mult)
    optimizer = torch.optim.AdamW(groups, lr=algo.lr, betas=(algo.beta1, algo.beta2), eps=algo.eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, algo.warmup_steps, total_steps, algo.min_lr_ratio))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def keep_trainable_weights_only(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """For a LoRA policy, drop the frozen base weights from a checkpoint: it holds the adapter and the optimizer
    state (megabytes), and the base comes from `model.name_or_path` when the run is resumed or evaluated."""
    policy = getattr(module, "lm", None)
    if policy is None or not policy.adapter_only:
        return
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}


def next_byte_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats per byte; `reduction="none"` keeps [B, T] for per-window statistics."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           reduction=reduction).reshape(targets.shape if reduction == "none" else ())


def lm_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] of a whole-sequence forward. Models whose forward can skip extracting the final recurrent
    state (HNetLM's `with_state`) are told to: under no_grad it would otherwise be computed, re-running every inner
    stack per group of rows with equal chunk counts (about 2x the cost of an evaluation batch)."""
    if "with_state" in inspect.signature(model.forward).parameters:
        logits, _ = model(ids, with_state=False)
    else:
        logits, _ = model(ids)
    return logits


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """The auxiliary loss of the model's latest forward pass (HNetLM: alpha * sum of the stages' ratio losses),
    to add to the LM loss; None for models without one."""
    aux = getattr(model, "last_aux", None)
    return None if aux is None else aux.loss


def chunk_metrics(stages: Sequence[Any]) -> dict[str, float]:
    """Per-stage router statistics (outer stage = 0) under their docs/metrics.md names: boundary_frac (F), mean_prob
    (G), realised compression (1/F), the unweighted ratio loss, and degenerate (1 if the stage marked every
    position or none but the forced first ones, else 0). `stages` are aegir.models.hnet.StageStats."""
    metrics: dict[str, float] = {}
    for index, stage in enumerate(stages):
        prefix = f"chunk/stage{index}/"
        metrics[prefix + "boundary_frac"] = float(stage.boundary_frac)
        metrics[prefix + "mean_prob"] = float(stage.mean_prob)
        if math.isfinite(stage.compression):
            metrics[prefix + "compression"] = float(stage.compression)
        metrics[prefix + "ratio_loss"] = float(stage.ratio_loss.detach())
        metrics[prefix + "degenerate"] = float(bool(stage.degenerate))
    return metrics


def pool_stage_stats(batches: Sequence[tuple[int, Sequence[Any]]]) -> list[tuple[float, float]]:
    """(F, G) per stage over several batches, each given as (positions at stage 0, its StageStats).

    Exact, not a mean of batch means: stage s+1 sees the boundaries of stage s, so its positions in a batch are
    n_{s+1} = F_s * n_s, and F_s, G_s are pooled with weights n_s.
    """
    if not batches:
        return []
    n_stages = len(batches[0][1])
    boundaries, probs, positions = [0.0] * n_stages, [0.0] * n_stages, [0.0] * n_stages
    for n_outer, stages in batches:
        n = float(n_outer)
        for s, stage in enumerate(stages):
            positions[s] += n
            boundaries[s] += stage.boundary_frac * n
            probs[s] += stage.mean_prob * n
            n = round(stage.boundary_frac * n)  # an integer count, up to float rounding of F
    return [(b / p, g / p) if p > 0 else (math.nan, math.nan) for b, g, p in zip(boundaries, probs, positions)]


class DegeneracyMonitor:
    """Says once per stage when its router degenerates (all boundaries or none), so a long run warns without
    repeating itself every step; the per-step `chunk/stage<s>/degenerate` metric carries the full record."""

    def __init__(self) -> None:
        self.warned: set[int] = set()

    def newly_degenerate(self, stages: Sequence[Any]) -> list[int]:
        """Indices of degenerate stages not reported before (and remembers them)."""
        fresh = [i for i, stage in enumerate(stages) if stage.degenerate and i not in self.warned]
        self.warned.update(fresh)
        return fresh


def degeneracy_message(index: int, stage: Any, step: int) -> str:
    if stage.boundary_frac >= 1.0:
        kind = "every position is a boundary"
    else:
        kind = "no boundaries besides each row's forced first position"
        if stage.boundary_frac > 0.5:  # only possible when this stage's rows are a position or two long
            kind += (f" (its rows average {1 / stage.boundary_frac:.2f} positions: the stage above passes on almost "
                     "no chunks)")
    return (f"H-Net chunking stage {index} degenerated at step {step}: {kind} (F={stage.boundary_frac:.4f}, "
            f"G={stage.mean_prob:.4f}); see chunk/stage{index}/* in TensorBoard")


class ByteLMModule(L.LightningModule):
    """Next-byte prediction with AdamW + warm-up/cosine; logs train/loss, train/bpb, val/loss, val/bpb.

    With an H-Net (a model exposing `last_aux`) the optimised loss is the LM loss plus the weighted ratio loss
    (logged as train/ratio_loss; train/loss and every bpb stay the pure LM loss, comparable across models), and the
    router statistics of every training batch are logged as chunk/stage<s>/*.
    """

    def __init__(self, model: nn.Module, train_bytes: torch.Tensor, val_windows: torch.Tensor, *,
                 task: PretrainTaskConfig, algo: LMAlgoConfig, seed: int, total_steps: int,
                 instrument: Instrument | None = None) -> None:
        super().__init__()
        self.model = model
        self.train_bytes = train_bytes
        self.val_windows = val_windows
        self.task, self.algo = task, algo
        self.seed = seed
        self.total_steps = total_steps
        self._val_sum = 0.0
        self._val_count = 0
        self._val_windows: list[torch.Tensor] = []
        self._last_batch_time: float | None = None
        self._degeneracy = DegeneracyMonitor()
        # The fixed cross-arm instrument (aegir/tasks/pretrain/instrument.py), scored at init and on the final weights.
        self.instrument = instrument

    # ------------------------------------------------------------------ data
    def train_dataloader(self) -> RandomWindowBatches:
        # Requested after a checkpoint is restored, so global_step is the resumed step here.
        accumulate = self.trainer.accumulate_grad_batches
        return RandomWindowBatches(self.train_bytes, self.task.seq_len, self.task.batch_size, self.seed,
                                   rank=self.trainer.global_rank,
                                   start_index=lambda: self.trainer.global_step * accumulate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_windows, batch_size=self.task.val_batch_size, shuffle=False)

    # ------------------------------------------------------------------ steps
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return lm_logits(self.model, ids)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        loss = next_byte_loss(self(inputs), targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpb", loss / LN2)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])  # type: ignore[union-attr]
        aux = auxiliary_loss(self.model)
        if aux is None:
            return loss
        stages = self.model.last_aux.stages  # type: ignore[union-attr]
        self.log("train/ratio_loss", aux)
        self.log_dict(chunk_metrics(stages))
        for index in self._degeneracy.newly_degenerate(stages):
            if self.global_rank == 0:  # every rank sees a collapse; one line says it
                log.warning(degeneracy_message(index, stages[index], int(self.global_step)))
        return loss + aux

    def on_train_batch_start(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: torch.Tensor, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._batch_start
        if elapsed > 0:
            world = self.trainer.world_size
            self.log("perf/bytes_per_s", batch[:, 1:].numel() * world / elapsed)

    def on_train_start(self) -> None:
        if self.global_rank == 0:
            add_band_charts(self.loggers, {EVAL_BANDS: {"val/bpb ± 95% CI": band("val/bpb")}})

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_count, self._val_windows = 0.0, 0, []

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        losses = next_byte_loss(self(inputs), targets, reduction="none")
        self._val_sum += float(losses.sum())
        self._val_count += losses.numel()
        self._val_windows.append(losses.detach().float().mean(dim=1).cpu())

    def on_validation_epoch_end(self) -> None:
        if self._val_count == 0:
            return
        loss = self._val_sum / self._val_count
        # Every rank scores the same fixed windows; the cross-rank mean is the same number on every rank.
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/bpb", loss / LN2, prog_bar=True, sync_dist=True)
        # the band of the eval chart: 95% CI of the mean over the validation windows
        spread = mean_ci(torch.cat(self._val_windows).double().numpy() / LN2)
        self.log_dict(band_bounds("val/bpb", loss / LN2, spread.ci95), sync_dist=True)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.model, self.algo, self.total_steps)

    def final_metrics(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """val/bpb and val/loss of the current weights on the fixed windows, with the per-window 95% CI; for an
        H-Net also each stage's boundary_frac, mean_prob and compression over those windows; with the cross-arm
        instrument, its eval/bpb/* and eval/relational/* metrics."""
        stage_stats: list[tuple[int, Sequence[Any]]] = []
        per_window_bpb = (evaluate_windows(self.model, self.val_windows, self.task.val_batch_size, stage_stats)
                          / LN2).numpy()
        bpb = mean_ci(per_window_bpb)
        metrics = {"val/bpb": bpb.mean, "val/loss": bpb.mean * LN2}
        for index, (frac, mean_prob) in enumerate(pool_stage_stats(stage_stats)):
            metrics[f"chunk/stage{index}/boundary_frac"] = frac
            metrics[f"chunk/stage{index}/mean_prob"] = mean_prob
            if frac > 0:
                metrics[f"chunk/stage{index}/compression"] = 1.0 / frac
        stats = {"val/bpb": bpb.as_dict()}
        if self.instrument is not None:
            metrics.update(score_instrument(self.model, self.instrument, self.task.seq_len, self.task.val_batch_size))
        return metrics, stats


@torch.no_grad()
def evaluate_windows(model: nn.Module, windows: torch.Tensor, batch_size: int,
                     stage_stats: list[tuple[int, Sequence[Any]]] | None = None,
                     per_byte: bool = False) -> torch.Tensor:
    """Mean next-byte loss (nats) of every window, [n_windows]: the per-window numbers behind val/bpb's CI;
    `per_byte` keeps every target byte's loss, [n_windows, seq_len] (the per-segment-kind eval bpb).
    With `stage_stats`, appends (positions, router stats) of every batch for models that report them (H-Net)."""
    was_training = model.training
    model.eval()
    per_window = []
    for batch in torch.split(windows, batch_size):
        logits = lm_logits(model, batch[:, :-1])
        losses = next_byte_loss(logits, batch[:, 1:], reduction="none")
        per_window.append(losses if per_byte else losses.mean(dim=1))
        aux = getattr(model, "last_aux", None)
        if stage_stats is not None and aux is not None:
            stage_stats.append((batch[:, :-1].numel(), aux.stages))
    model.train(was_training)
    return torch.cat(per_window)


@torch.no_grad()
def candidate_scores(model: nn.Module, items: Sequence[ProbeItem], max_len: int, batch_size: int) -> np.ndarray:
    """[n_items, k]: the mean log-probability per byte (nats) of each candidate's bytes after its context, minus the
    same after the item's baseline context when it has one. A context longer than fits `max_len` together with the
    candidate loses its oldest bytes (the model was trained on windows of that length). Length-normalised so that
    longer candidates are not penalised for their length."""
    k = len(items[0].candidates) if items else 0
    scores = _mean_logprobs(model, [(item.context, item.candidates) for item in items], max_len, batch_size)
    calibrated = [i for i, item in enumerate(items) if item.baseline]
    if calibrated:
        base = _mean_logprobs(model, [(items[i].baseline, items[i].candidates) for i in calibrated], max_len,
                              batch_size)
        scores.reshape(len(items), k)[calibrated] -= base.reshape(len(calibrated), k)
    return scores.reshape(len(items), k)


def _mean_logprobs(model: nn.Module, pairs: Sequence[tuple[str, Sequence[str]]], max_len: int,
                   batch_size: int) -> np.ndarray:
    """Flat [sum of candidates]: each candidate's mean log-probability per byte after its context."""
    sequences: list[tuple[list[int], int]] = []  # (bytes, length of the candidate at the end)
    for context_text, candidates in pairs:
        context = list(context_text.encode("utf-8"))
        for candidate in candidates:
            tail = list(candidate.encode("utf-8"))
            keep = max(1, max_len - len(tail))
            sequences.append((context[-keep:] + tail, len(tail)))
    out = np.empty(len(sequences))
    was_training = model.training
    model.eval()
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)  # right padding: causal models never look ahead
        for row, (seq, _) in enumerate(chunk):
            ids[row, :len(seq)] = torch.tensor(seq)
        logp = F.log_softmax(lm_logits(model, ids[:, :-1]).float(), dim=-1)
        token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        for row, (seq, n_tail) in enumerate(chunk):
            out[start + row] = float(token_logp[row, len(seq) - 1 - n_tail:len(seq) - 1].mean())
    model.train(was_training)
    return out


def per_kind_metrics(model: nn.Module, windows: EvalWindows, prefix: str, batch_size: int) -> dict[str, float]:
    """`<prefix>/<kind>` for every segment kind and `<prefix>/common`, with companions: the seen-class and the
    held-out-class eval windows are scored the same way."""
    losses = evaluate_windows(model, windows.windows, batch_size, per_byte=True).numpy()
    kinds = windows.kinds[:, 1:].numpy()
    metrics: dict[str, float] = {}
    for kind, code in KIND_CODES.items():
        metrics.update(with_companions(f"{prefix}/{kind}", mean_ci(per_kind_window_bpb(losses, kinds, [code]))))
    common = [KIND_CODES[k] for k in COMMON_KINDS]
    metrics.update(with_companions(f"{prefix}/common", mean_ci(per_kind_window_bpb(losses, kinds, common))))
    return metrics


def score_instrument(model: nn.Module, instrument: Instrument, seq_len: int, batch_size: int) -> dict[str, float]:
    """Every instrument metric of the model's current weights. Probe sequences are at most PROBE_MAX_BYTES long
    (and never longer than a training window): their contexts are short by construction, the cap trims the top of
    a long CREATE TABLE, and it bounds the cost of the evaluation."""
    metrics: dict[str, float] = {}
    for prefix, windows in (("eval/bpb", instrument.eval_windows), ("eval/bpb_heldout", instrument.heldout_windows)):
        if windows is not None:
            metrics.update(per_kind_metrics(model, windows, prefix, batch_size))
    accuracies, log_odds = [], []
    max_len = min(seq_len + 1, PROBE_MAX_BYTES)
    for name, items in instrument.probes.items():
        answers = np.array([item.answer for item in items])
        probe, accuracy, odds = probe_metrics(name, candidate_scores(model, items, max_len, batch_size), answers)
        metrics.update(probe)
        accuracies.append(accuracy)
        log_odds.append(odds)
    if accuracies:  # every probe has the same number of items: the pooled mean is the mean of the probe means
        metrics.update(with_companions("eval/relational/mean", mean_ci(np.concatenate(accuracies))))
        metrics.update(with_companions("eval/relational/log_odds", mean_ci(np.concatenate(log_odds))))
    return metrics

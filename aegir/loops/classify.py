"""Lightning module for column classification (CTA / CPA): a byte-LM backbone, pooled, under a linear head.

Orchestration only: pooling and feature extraction live in aegir/models/features.py, the metrics (F1, bootstrap
CIs, confusion picture, liveness diagnostics) in aegir/eval/classification.py and aegir/eval/collapse.py, the gate
verdicts in aegir/eval/gates.py.

Checkpoint layout: the backbone is the attribute `model` (as in the LM and SFT loops) and the head is `head`, so a
classifier checkpoint holds `model.<backbone keys>` + `head.*`; `model.pretrained` accepts a pretraining checkpoint
(loaded into the backbone by aegir.models.build) and also a classifier checkpoint (its `model.*` part).

Every validation scores the fixed validation split: val/macro_f1, val/micro_f1, val/distinct_preds, val/loss, the
collapse diagnostics live/* of the pooled features, the H-Net's chunk/stage<s>/* and the verdict of every
configured gate (gate/<name>), plus a confusion-matrix image and a per-label F1 table in TensorBoard.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aegir.config.schema import ClassifyAlgoConfig
from aegir.eval.classification import (bootstrap_f1, class_weights, confusion_matrix,
                                       evaluation_metrics, per_class_f1, per_class_table)
from aegir.eval.gates import evaluate_gates, gate_metrics
from aegir.eval.classification import confusion_figure  # the labelled figure (a line of its own: issue 16)
from aegir.loops.lm import auxiliary_loss, chunk_metrics, parameter_groups, pool_stage_stats, warmup_cosine
from aegir.loops.record_batches import RecordBatches, record_loader
from aegir.models.features import backbone_hidden, move_cls_to_end, pad_batch, pool, pooled_width
from aegir.observe.tensorboard import EVAL_BANDS, add_band_charts, band
from aegir.tasks.pretrain.windows import mix_seed

log = logging.getLogger("aegir")


# --------------------------------------------------------------------------------------------------- pure helpers
def backbone_frozen(step: int, freeze_steps: int) -> bool:
    """Whether the backbone is frozen at optimizer step `step` (0-based): during the first `freeze_steps` steps."""
    return step < freeze_steps


def backbone_lr_factor(step: int, freeze_steps: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier of the backbone groups: 0 while frozen, then its own warm-up + cosine over the remaining steps,
    so unfreezing never hits pretrained weights with the full learning rate at once."""
    if step < freeze_steps:
        return 0.0
    return warmup_cosine(step - freeze_steps, warmup_steps, max(1, total_steps - freeze_steps), min_ratio)


def seeded_dropout(x: Tensor, p: float, seed: int) -> Tensor:
    """Inverted dropout whose mask is a pure function of `seed` (batch i of rank r uses mix_seed(seed, r, i)), so a
    resumed run draws the masks the uninterrupted one drew."""
    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    keep = (torch.rand(x.shape, generator=generator) >= p).to(device=x.device, dtype=x.dtype)
    return x * keep / (1.0 - p)


def encode_examples(examples: Sequence[Any], pooling: str) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ids [B, T], valid lengths [B] and labels [B] of ColumnExamples (ids + label); `cls_last`
    pooling moves each row's leading [CLS] behind its last byte."""
    ids, lengths = pad_batch([example.ids for example in examples])
    if pooling == "cls_last":
        ids, lengths = move_cls_to_end(ids, lengths)
    labels = torch.tensor([int(example.label) for example in examples], dtype=torch.long)
    return ids, lengths, labels


# --------------------------------------------------------------------------------------------------- module
class ColumnClassifierModule(L.LightningModule):
    """Cross-entropy fine-tuning of backbone + pooled linear head, with the liveness diagnostics at every eval.

    algo: the validated `algo` section (lr and schedule, batch_size, val_batch_size, freeze_backbone_steps,
    backbone_lr_mult, head_dropout, pooling, class_weighting, liveness{knn_k, inflation, expansion, max_points}).
    gates: the validated `gates` section; their verdicts are logged as gate/<name> at every validation.
    """

    def __init__(self, model: nn.Module, labels: Sequence[str], train: Sequence[Any], val: Sequence[Any],
                 test: Sequence[Any] = (), *, algo: ClassifyAlgoConfig, gates: Mapping[str, Any] | None = None,
                 seed: int, total_steps: int) -> None:
        super().__init__()
        if not train or not val:
            raise ValueError("classification needs training and validation examples")
        self.model = model
        self.labels = list(labels)
        self.train_examples, self.val_examples, self.test_examples = list(train), list(val), list(test)
        self.algo = algo
        self.gates = dict(gates or {})
        self.seed, self.total_steps = seed, total_steps
        self.pooling = self.algo.pooling
        self.freeze_steps = self.algo.freeze_backbone_steps
        self.head_dropout = self.algo.head_dropout
        self.head = nn.Linear(pooled_width(model, self.pooling), len(self.labels))
        counts = torch.bincount(torch.tensor([int(e.label) for e in self.train_examples]),
                                minlength=len(self.labels)).tolist()
        weights = class_weights(counts, self.algo.class_weighting)
        self.register_buffer("class_weight", weights if weights is not None else torch.empty(0), persistent=False)
        self._trainable: bool | None = None
        self._val: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ data
    def train_dataloader(self) -> Any:
        accumulate = self.trainer.accumulate_grad_batches
        return record_loader(RecordBatches(self.train_examples, self.algo.batch_size, self.seed,  # type: ignore[arg-type]
                                           rank=self.trainer.global_rank,
                                           start_index=lambda: self.trainer.global_step * accumulate))

    def val_dataloader(self) -> Any:
        return record_loader(self._chunks(self.val_examples))  # type: ignore[arg-type]

    def _chunks(self, examples: Sequence[Any]) -> list[list[Any]]:
        size = self.algo.val_batch_size
        return [list(examples[i: i + size]) for i in range(0, len(examples), size)]

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches are lists of examples; the steps encode and move them (Lightning would try to copy them)."""
        return batch

    # ------------------------------------------------------------------ model
    def features(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Pooled backbone features [B, F] (what the head and the liveness diagnostics see)."""
        return pool(backbone_hidden(self.model, ids, lengths), lengths, self.pooling)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Logits [B, n_labels] (no dropout)."""
        return self.head(self.features(ids, lengths))

    def _set_backbone_trainable(self, trainable: bool) -> None:
        if self._trainable is trainable:
            return
        for param in self.model.parameters():
            param.requires_grad_(trainable)
        self._trainable = trainable
        if self.global_rank == 0 and self.freeze_steps > 0:
            log.info("backbone %s at step %d", "unfrozen" if trainable else "frozen", int(self.global_step))

    # ------------------------------------------------------------------ training
    def training_step(self, examples: list[Any], batch_idx: int) -> Tensor:
        step = int(self.global_step)
        frozen = backbone_frozen(step, self.freeze_steps)
        self._set_backbone_trainable(not frozen)
        ids, lengths, labels = (t.to(self.device) for t in encode_examples(examples, self.pooling))
        if frozen:
            with torch.no_grad():
                feats = self.features(ids, lengths)
        else:
            feats = self.features(ids, lengths)
        accumulate = self.trainer.accumulate_grad_batches
        index = step * accumulate + batch_idx % accumulate  # the RecordBatches index of this micro-batch
        logits = self.head(seeded_dropout(feats, self.head_dropout, mix_seed(self.seed + 1, self.global_rank, index)))
        weight = self.class_weight if self.class_weight.numel() else None
        loss = F.cross_entropy(logits.float(), labels, weight=weight)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(-1) == labels).float().mean())
        self.log("train/lr", self.optimizers().param_groups[-1]["lr"])  # type: ignore[union-attr]
        self.log("train/backbone_frozen", float(frozen))
        aux = None if frozen else auxiliary_loss(self.model)
        if aux is not None:  # H-Net: keep its chunking near target while fine-tuning
            self.log("train/ratio_loss", aux)
            self.log_dict(chunk_metrics(self.model.last_aux.stages))  # type: ignore[union-attr]
            loss = loss + aux
        return loss

    # ------------------------------------------------------------------ validation
    def on_train_start(self) -> None:
        if self.global_rank == 0:
            add_band_charts(self.loggers, {EVAL_BANDS: {"val/macro_f1 (bootstrap 95% CI)": band("val/macro_f1")}})

    def on_validation_epoch_start(self) -> None:
        self._val = {"preds": [], "targets": [], "feats": [], "losses": [], "stages": []}

    def validation_step(self, examples: list[Any], batch_idx: int) -> None:
        ids, lengths, labels = (t.to(self.device) for t in encode_examples(examples, self.pooling))
        feats = self.features(ids, lengths)
        logits = self.head(feats)
        self._val["losses"].append(F.cross_entropy(logits.float(), labels, reduction="none").cpu())
        self._val["preds"].append(logits.argmax(-1).cpu())
        self._val["targets"].append(labels.cpu())
        self._val["feats"].append(feats.float().cpu())
        aux = getattr(self.model, "last_aux", None)
        if aux is not None:
            self._val["stages"].append((int(lengths.sum()), aux.stages))

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("preds"):
            return
        preds, targets = torch.cat(self._val["preds"]), torch.cat(self._val["targets"])
        metrics = self._metrics(preds, targets, torch.cat(self._val["feats"]), torch.cat(self._val["losses"]),
                                self._val["stages"])
        verdicts = evaluate_gates(self.gates, metrics)
        metrics.update(gate_metrics(verdicts))
        # Every rank scores the same fixed split, so the numbers agree; sync_dist keeps Lightning's DDP contract.
        macro = metrics.pop("val/macro_f1")
        self.log("val/macro_f1", macro, prog_bar=True, sync_dist=True)
        # the band of the eval chart: bootstrap 95% interval over the validation examples
        ci = bootstrap_f1(preds, targets, len(self.labels), seed=self.seed)["macro_f1"]
        self.log_dict({"val/macro_f1/lower": ci["low"], "val/macro_f1/upper": ci["high"]}, sync_dist=True)
        self.log_dict(metrics, sync_dist=True)
        if self.global_rank == 0:
            self._tensorboard_figures(preds, targets)
            failed = [name for name, v in verdicts.items() if not v.passed]
            if failed:
                log.info("step %d: gate(s) failing now: %s", int(self.global_step), ", ".join(failed))

    def _metrics(self, preds: Tensor, targets: Tensor, feats: Tensor, losses: Tensor,
                 stages: list[tuple[int, Sequence[Any]]], prefix: str = "val/") -> dict[str, float]:
        metrics = evaluation_metrics(preds, targets, feats, len(self.labels), prefix=prefix,
                                     loss=float(losses.mean()), liveness=asdict(self.algo.liveness))
        for index, (frac, mean_prob) in enumerate(pool_stage_stats(stages)):
            metrics[f"chunk/stage{index}/boundary_frac"] = frac
            metrics[f"chunk/stage{index}/mean_prob"] = mean_prob
            if frac > 0:
                metrics[f"chunk/stage{index}/compression"] = 1.0 / frac
        return metrics

    def _tensorboard_figures(self, preds: Tensor, targets: Tensor) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers:
            return
        step = int(self.global_step)
        image = confusion_figure(confusion_matrix(preds, targets, len(self.labels)), self.labels)  # labelled, top-k
        scores = per_class_f1(preds, targets, self.labels)
        support = {self.labels[i]: int(n) for i, n in enumerate(torch.bincount(targets, minlength=len(self.labels)))
                   if n}
        predicted = {self.labels[i]: int(n) for i, n in enumerate(torch.bincount(preds, minlength=len(self.labels)))
                     if n}
        for writer in writers:
            writer.add_image("val/confusion_matrix", image, step)
            writer.add_text("val/per_class_f1", per_class_table(scores, support, predicted), step)

    # ------------------------------------------------------------------ final evaluation
    @torch.no_grad()
    def evaluate(self, examples: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor, Tensor,
                                                         list[tuple[int, Sequence[Any]]]]:
        """Predictions, targets, pooled features, per-example losses and H-Net stage stats of `examples`."""
        was_training = self.training
        self.eval()
        preds, targets, feats, losses, stages = [], [], [], [], []
        for chunk in self._chunks(examples):
            ids, lengths, labels = (t.to(self.device) for t in encode_examples(chunk, self.pooling))
            f = self.features(ids, lengths)
            logits = self.head(f)
            preds.append(logits.argmax(-1).cpu())
            targets.append(labels.cpu())
            feats.append(f.float().cpu())
            losses.append(F.cross_entropy(logits.float(), labels, reduction="none").cpu())
            aux = getattr(self.model, "last_aux", None)
            if aux is not None:
                stages.append((int(lengths.sum()), aux.stages))
        self.train(was_training)
        return torch.cat(preds), torch.cat(targets), torch.cat(feats), torch.cat(losses), stages

    def final_metrics(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """The current weights (main loads best.ckpt first) on the validation split -- every validation metric,
        per-label F1 as val/f1/<label> -- and on the test split when there is one (test/macro_f1, test/micro_f1,
        test/distinct_preds); bootstrap 95% CIs of macro/micro F1 over the examples as the stats."""
        preds, targets, feats, losses, stages = self.evaluate(self.val_examples)
        metrics = self._metrics(preds, targets, feats, losses, stages)
        metrics.update({f"val/f1/{label}": score for label, score in per_class_f1(preds, targets, self.labels).items()})
        stats: dict[str, dict[str, float]] = {}
        for name, ci in bootstrap_f1(preds, targets, len(self.labels), seed=self.seed).items():
            stats[f"val/{name}"] = ci
        if self.test_examples:
            t_preds, t_targets, t_feats, t_losses, _ = self.evaluate(self.test_examples)
            metrics.update(evaluation_metrics(t_preds, t_targets, t_feats, len(self.labels), prefix="test/",
                                              loss=float(t_losses.mean())))
            for name, ci in bootstrap_f1(t_preds, t_targets, len(self.labels), seed=self.seed).items():
                stats[f"test/{name}"] = ci
        return metrics, stats

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW: the backbone's groups (aegir.loops.lm.parameter_groups) at lr x backbone_lr_mult with their own
        schedule (`backbone_lr_factor`), the head at lr (decay on its weight only), both warm-up + cosine."""
        a = self.algo
        lr, wd = a.lr, a.weight_decay
        for param in self.model.parameters():  # parameter_groups skips frozen parameters: collect them all
            param.requires_grad_(True)
        self._trainable = True
        backbone = parameter_groups(self.model, lr * a.backbone_lr_mult, wd, a.w0_lr_mult)
        head = [{"params": [self.head.weight], "weight_decay": wd, "lr": lr},
                {"params": [self.head.bias], "weight_decay": 0.0, "lr": lr}]
        optimizer = torch.optim.AdamW(backbone + head, lr=lr, betas=(a.beta1, a.beta2), eps=a.eps)
        warmup, min_ratio, total = a.warmup_steps, a.min_lr_ratio, self.total_steps
        freeze = self.freeze_steps

        def backbone_factor(step: int) -> float:
            return backbone_lr_factor(step, freeze, warmup, total, min_ratio)

        def head_factor(step: int) -> float:
            return warmup_cosine(step, warmup, total, min_ratio)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, [backbone_factor] * len(backbone) + [head_factor] * 2)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

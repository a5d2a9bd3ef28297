"""Lightning module for supervised fine-tuning on prompt/reference records: next-byte cross-entropy on the
completion only (the prompt is context, not a target). It is the warm start before GRPO: a policy from random init
writes nothing its verifiers can tell apart, so its groups have no reward variance to learn from.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aegir.eval.stats import mean_ci
from aegir.loops.lm import LN2, adamw_with_schedule, auxiliary_loss
from aegir.loops.record_batches import RecordBatches, record_loader
from aegir.tasks.chat import encode_completion, encode_prompt
from aegir.tokenizer import PAD_ID


def encode_pair(record: Mapping[str, Any], max_len: int) -> tuple[list[int], int]:
    """prompt + reference + EOS as ids, and the index where the completion starts. Over-long sequences lose the
    start of the prompt (the instruction's end and the whole completion are what the model must see)."""
    prompt, completion = encode_prompt(record["prompt"]), encode_completion(str(record["reference"]))
    ids = prompt + completion
    start = len(prompt)
    if len(ids) > max_len:
        cut = len(ids) - max_len
        ids, start = ids[cut:], max(start - cut, 1)
    return ids, start


def collate_pairs(records: Sequence[Mapping[str, Any]], max_len: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids [B, T] and a float mask [B, T] that is 1 on completion positions (the targets)."""
    encoded = [encode_pair(r, max_len) for r in records]
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(encoded), width)
    for row, (seq, start) in enumerate(encoded):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, start: len(seq)] = 1.0
    return ids, mask


def completion_losses(model: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:
    """Per-record mean next-byte loss (nats) over its completion bytes, [B]."""
    logits, _ = model(ids[:, :-1])
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                             reduction="none").view(ids.shape[0], -1)
    targets = mask[:, 1:]
    return (losses * targets).sum(1) / targets.sum(1).clamp_min(1.0)


class SFTModule(L.LightningModule):
    """Completion-only cross-entropy with AdamW + warm-up/cosine; val/loss and val/bpb on the fixed eval records."""

    def __init__(self, model: nn.Module, train_records: Sequence[Mapping[str, Any]],
                 eval_records: Sequence[Mapping[str, Any]], algo: Mapping[str, Any], *, seed: int,
                 total_steps: int) -> None:
        super().__init__()
        self.model = model
        self.train_records, self.eval_records = list(train_records), list(eval_records)
        self.algo, self.seed, self.total_steps = dict(algo), seed, total_steps
        self._val_losses: list[Tensor] = []

    def train_dataloader(self) -> Any:
        accumulate = self.trainer.accumulate_grad_batches
        return record_loader(RecordBatches(self.train_records, int(self.algo["batch_size"]), self.seed,
                                           rank=self.trainer.global_rank,
                                           start_index=lambda: self.trainer.global_step * accumulate))

    def val_dataloader(self) -> Any:
        size = int(self.algo["batch_size"])
        return record_loader([self.eval_records[i: i + size] for i in range(0, len(self.eval_records), size)])

    def training_step(self, records: list[Mapping[str, Any]], batch_idx: int) -> Tensor:
        ids, mask = collate_pairs(records, int(self.algo["max_len"]))
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits, _ = self.model(ids[:, :-1])
        losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                 reduction="none").view(ids.shape[0], -1)
        targets = mask[:, 1:]
        loss = (losses * targets).sum() / targets.sum().clamp_min(1.0)  # mean over completion bytes
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpb", loss / LN2)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])  # type: ignore[union-attr]
        aux = auxiliary_loss(self.model)  # H-Net: keep its chunking near target while fine-tuning
        if aux is not None:
            self.log("train/ratio_loss", aux)
            loss = loss + aux
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_losses = []

    def validation_step(self, records: list[Mapping[str, Any]], batch_idx: int) -> None:
        ids, mask = collate_pairs(records, int(self.algo["max_len"]))
        self._val_losses.append(completion_losses(self.model, ids.to(self.device), mask.to(self.device)).cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_losses:
            return
        loss = float(torch.cat(self._val_losses).mean())
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/bpb", loss / LN2, prog_bar=True, sync_dist=True)

    @torch.no_grad()
    def final_metrics(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Per-record completion bpb on the eval records, with its 95% CI."""
        was_training = self.model.training
        self.model.eval()
        size = int(self.algo["batch_size"])
        losses = []
        for i in range(0, len(self.eval_records), size):
            ids, mask = collate_pairs(self.eval_records[i: i + size], int(self.algo["max_len"]))
            losses.append(completion_losses(self.model, ids, mask))
        self.model.train(was_training)
        bpb = mean_ci((torch.cat(losses) / LN2).numpy())
        return {"val/bpb": bpb.mean, "val/loss": bpb.mean * LN2}, {"val/bpb": bpb.as_dict()}

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.model, self.algo, self.total_steps)



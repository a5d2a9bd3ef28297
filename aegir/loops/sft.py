"""Lightning module for supervised fine-tuning on prompt/reference records: next-token cross-entropy on the
completion only (the prompt is context, not a target). It is the warm start before GRPO: a policy from random init
writes nothing its verifiers can tell apart, so its groups have no reward variance to learn from.

Any policy (aegir/models/policy.py) trains here. `val/bpb` is bits per *byte* of the completion text (the
end-of-turn token counts as one byte), so a byte model and a subword model report comparable numbers; for a byte
model it equals the per-token loss / ln 2 exactly.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aegir.config.schema import SFTAlgoConfig
from aegir.eval.stats import mean_ci
from aegir.observe.tensorboard import EVAL_BANDS, add_band_charts, band, band_bounds
from aegir.loops.lm import LN2, adamw_with_schedule, auxiliary_loss, keep_trainable_weights_only
from aegir.loops.record_batches import RecordBatches, record_loader
from aegir.models.policy import BytePolicy, Policy


_BYTE_TEXT = BytePolicy(nn.Identity())  # the byte encoding needs no model: the default of the collate helpers


def as_policy(model: nn.Module | Policy) -> Policy:
    """A bare byte model (RWKV-7 / H-Net module) is wrapped in its policy; a policy is used as it is."""
    return BytePolicy(model) if isinstance(model, nn.Module) else model


def encode_pair(record: Mapping[str, Any], max_len: int, policy: Policy | None = None
                ) -> tuple[list[int], int, int]:
    """prompt + reference + end of turn as ids, the index where the completion starts, and the completion's byte
    count (bpb's denominator). Over-long sequences lose the start of the prompt (the instruction's end and the whole
    completion are what the model must see)."""
    policy = policy or _BYTE_TEXT
    prompt, completion = policy.encode_prompt(record["prompt"]), policy.encode_completion(str(record["reference"]))
    ids = prompt + completion
    start = len(prompt)
    if len(ids) > max_len:
        cut = len(ids) - max_len
        ids, start = ids[cut:], max(start - cut, 1)
    return ids, start, policy.completion_units(ids[start:])


def collate_pairs(records: Sequence[Mapping[str, Any]], max_len: int, policy: Policy | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Right-padded ids [B, T] and a float mask [B, T] that is 1 on completion positions (the targets)."""
    ids, mask, _ = collate_with_units(records, max_len, policy)
    return ids, mask


def collate_with_units(records: Sequence[Mapping[str, Any]], max_len: int, policy: Policy | None = None
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """`collate_pairs` plus each record's completion byte count [B]."""
    encoded = [encode_pair(r, max_len, policy) for r in records]
    width = max(len(ids) for ids, _, _ in encoded)
    pad = policy.pad_id if policy is not None else BytePolicy.pad_id
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros(len(encoded), width)
    for row, (seq, start, _) in enumerate(encoded):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, start: len(seq)] = 1.0
    units = torch.tensor([float(n) for _, _, n in encoded])
    return ids, mask, units


def token_losses(policy: Policy, ids: Tensor, mask: Tensor) -> Tensor:
    """Next-token cross-entropy (nats) [B, T-1] on completion positions, 0 elsewhere."""
    attention = (torch.arange(ids.shape[1], device=ids.device)[None, :] <
                 _lengths(mask).to(ids.device)[:, None]).long()[:, :-1]
    logits = policy.sequence_logits(ids[:, :-1], attention)
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                             reduction="none").view(ids.shape[0], -1)
    return losses * mask[:, 1:]


def _lengths(mask: Tensor) -> Tensor:
    """Each right-padded row's length: the completion (the mask) ends the row."""
    positions = torch.arange(mask.shape[1], device=mask.device)[None, :].expand_as(mask)
    return (positions * (mask > 0)).amax(1) + 1


def completion_bits_per_byte(policy: Policy, ids: Tensor, mask: Tensor, units: Tensor) -> Tensor:
    """Per-record bits per byte of its completion, [B]."""
    return token_losses(policy, ids, mask).sum(1) / units.to(ids.device).clamp_min(1.0) / LN2


class SFTModule(L.LightningModule):
    """Completion-only cross-entropy with AdamW + warm-up/cosine; val/loss and val/bpb on the fixed eval records."""

    def __init__(self, policy: nn.Module | Policy, train_records: Sequence[Mapping[str, Any]],
                 eval_records: Sequence[Mapping[str, Any]], algo: SFTAlgoConfig, *, seed: int,
                 total_steps: int) -> None:
        super().__init__()
        self.lm = as_policy(policy)
        self.model: nn.Module = self.lm.model  # registered here: checkpoints keep the `model.` keys
        self.strict_loading = not self.lm.adapter_only
        self.train_records, self.eval_records = list(train_records), list(eval_records)
        self.algo, self.seed, self.total_steps = algo, seed, total_steps
        self._val_losses: list[Tensor] = []

    def train_dataloader(self) -> Any:
        accumulate = self.trainer.accumulate_grad_batches
        return record_loader(RecordBatches(self.train_records, self.algo.batch_size, self.seed,
                                           rank=self.trainer.global_rank,
                                           start_index=lambda: self.trainer.global_step * accumulate))

    def val_dataloader(self) -> Any:
        size = self.algo.batch_size
        return record_loader([self.eval_records[i: i + size] for i in range(0, len(self.eval_records), size)])

    def training_step(self, records: list[Mapping[str, Any]], batch_idx: int) -> Tensor:
        ids, mask, units = collate_with_units(records, self.algo.max_len, self.lm)
        ids, mask = ids.to(self.device), mask.to(self.device)
        losses = token_losses(self.lm, ids, mask)
        loss = losses.sum() / mask[:, 1:].sum().clamp_min(1.0)  # mean over completion tokens
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpb", losses.sum().detach() / units.sum().clamp_min(1.0).to(self.device) / LN2)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])  # type: ignore[union-attr]
        aux = auxiliary_loss(self.model)  # H-Net: keep its chunking near target while fine-tuning
        if aux is not None:
            self.log("train/ratio_loss", aux)
            loss = loss + aux
        return loss

    def on_train_start(self) -> None:
        if self.global_rank == 0:
            add_band_charts(self.loggers, {EVAL_BANDS: {"val/bpb ± 95% CI": band("val/bpb")}})

    def on_validation_epoch_start(self) -> None:
        self._val_losses = []

    def validation_step(self, records: list[Mapping[str, Any]], batch_idx: int) -> None:
        ids, mask, units = collate_with_units(records, self.algo.max_len, self.lm)
        self._val_losses.append(completion_bits_per_byte(self.lm, ids.to(self.device), mask.to(self.device),
                                                         units).cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_losses:
            return
        per_record = torch.cat(self._val_losses)
        bpb = float(per_record.mean())
        self.log("val/loss", bpb * LN2, sync_dist=True)
        self.log("val/bpb", bpb, prog_bar=True, sync_dist=True)
        # the band of the eval chart: 95% CI of the mean over the eval records
        self.log_dict(band_bounds("val/bpb", bpb, mean_ci(per_record.double().numpy()).ci95), sync_dist=True)

    @torch.no_grad()
    def final_metrics(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Per-record completion bpb on the eval records, with its 95% CI."""
        was_training = self.model.training
        self.model.eval()
        size = self.algo.batch_size
        values = []
        for i in range(0, len(self.eval_records), size):
            ids, mask, units = collate_with_units(self.eval_records[i: i + size], self.algo.max_len, self.lm)
            values.append(completion_bits_per_byte(self.lm, ids.to(self.device), mask.to(self.device), units).cpu())
        self.model.train(was_training)
        bpb = mean_ci(torch.cat(values).numpy())
        return {"val/bpb": bpb.mean, "val/loss": bpb.mean * LN2}, {"val/bpb": bpb.as_dict()}

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.model, self.algo, self.total_steps)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_trainable_weights_only(self, checkpoint)



"""Pooled sequence features from the byte LMs, for classification heads (CTA / CPA, aegir/loops/classify.py).

Both models are *causal*: position t sees positions <= t only. Two consequences shape this module:

* right padding is safe: valid positions never see the pads after them, so a padded batch gives every row the
  hidden states it would get alone (up to float rounding); the pads' own states are masked out of every pooling;
* a summary token at position 0 sees nothing, so BERT-style [CLS]-at-the-start pooling is meaningless here.

Poolings (``POOLINGS``):

    mean       masked mean over the valid positions (default: every byte contributes, robust at init)
    max        masked element-wise max over the valid positions
    last       the last valid position (the final [SEP] of a serialized column), which has read the whole row
    mean_last  mean and last concatenated (feature width 2 x d_model)
    cls_last   the leading [CLS] is moved to the end of the row (`move_cls_to_end`), and its state is the feature:
               a learned summary token that, unlike position 0, has read everything before it

Hidden states are the models' final-normed ones (after `ln_out`, what the LM head reads), so a pretrained LM's
representation is used as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from aegir.tokenizer import CLS_ID, PAD_ID

POOLINGS: tuple[str, ...] = ("mean", "max", "last", "mean_last", "cls_last")


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Right-padded ids [B, T] (T = longest row) and valid lengths [B]. Empty rows are refused: a causal model
    has no state to pool for them."""
    if not rows:
        raise ValueError("pad_batch needs at least one row")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    if int(lengths.min()) < 1:
        raise ValueError("every row needs at least one id")
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return ids, lengths


def valid_mask(lengths: Tensor, seq_len: int) -> Tensor:
    """Bool [B, T]: True at positions < lengths[b]."""
    return torch.arange(seq_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def move_cls_to_end(ids: Tensor, lengths: Tensor, cls_id: int = CLS_ID, pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """For `cls_last` pooling: rows that start with [CLS] get it moved behind their last valid id (same length);
    rows without one get a [CLS] appended (length + 1; the batch widens by one column if a full row needs it)."""
    batch, seq_len = ids.shape
    starts_cls = ids[:, 0] == cls_id
    new_lengths = lengths + (~starts_cls).long()
    width = max(seq_len, int(new_lengths.max()))
    out = torch.full((batch, width), pad_id, dtype=ids.dtype, device=ids.device)
    positions = torch.arange(seq_len, device=ids.device).unsqueeze(0)
    # Rows starting with [CLS]: shift left by one (drop it); others stay in place.
    shift = starts_cls.long().unsqueeze(1)
    src = (positions + shift).clamp(max=seq_len - 1)
    body = ids.gather(1, src)
    keep = positions < (new_lengths - 1).unsqueeze(1)
    out[:, :seq_len] = torch.where(keep, body, torch.full_like(body, pad_id))
    out[torch.arange(batch, device=ids.device), new_lengths - 1] = cls_id
    return out, new_lengths


def pool(hidden: Tensor, lengths: Tensor, mode: str) -> Tensor:
    """Pool hidden states [B, T, D] over each row's valid prefix -> [B, D] ([B, 2D] for mean_last)."""
    if mode not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {mode!r}")
    batch, seq_len, _ = hidden.shape
    if lengths.shape != (batch,) or int(lengths.min()) < 1 or int(lengths.max()) > seq_len:
        raise ValueError(f"lengths must be [B] within 1..{seq_len}, got {lengths.tolist()}")
    mask = valid_mask(lengths, seq_len).unsqueeze(-1)
    last = hidden[torch.arange(batch, device=hidden.device), lengths - 1]
    if mode in ("last", "cls_last"):
        return last
    if mode == "max":
        return hidden.masked_fill(~mask, float("-inf")).amax(dim=1)
    mean = (hidden * mask).sum(dim=1) / lengths.unsqueeze(1).to(hidden.dtype)
    return mean if mode == "mean" else torch.cat([mean, last], dim=-1)


def pooled_width(model: nn.Module, mode: str) -> int:
    """Feature width of `pool(backbone_hidden(model, ...), ..., mode)`."""
    return hidden_width(model) * (2 if mode == "mean_last" else 1)


def hidden_width(model: nn.Module) -> int:
    """Width of the final hidden states (the outer stage's for an H-Net)."""
    return int(model.ln_out.normalized_shape[0])  # type: ignore[union-attr,index]


def backbone_hidden(model: nn.Module, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Final-normed hidden states [B, T, D] of a ByteLM or HNetLM (no LM head).

    For an H-Net the valid `lengths` go to the router, so its statistics (and ratio loss) count real bytes only;
    like `HNetLM.forward` it sets `model.last_aux` (loss = alpha x sum of the stages' ratio losses, per-stage stats).
    """
    from aegir.models.hnet import HNetAux, HNetLM
    from aegir.models.lm import ByteLM

    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be [B, T] with T >= 1, got {tuple(ids.shape)}")
    if isinstance(model, ByteLM):
        hidden, _ = model.body(model.emb(ids))
        return model.ln_out(hidden)
    if isinstance(model, HNetLM):
        batch, seq_len = ids.shape
        if lengths is None:
            lengths = torch.full((batch,), seq_len, dtype=torch.long, device=ids.device)
        hidden, _, stats = model.hnet(model.emb(ids), lengths.to(ids.device), model.initial_state(batch), False)
        model.last_aux = HNetAux(model.ratio_loss_weight * torch.stack([s.ratio_loss for s in stats]).sum(), stats)
        return model.ln_out(hidden)
    raise TypeError(f"backbone_hidden supports ByteLM and HNetLM, got {type(model).__name__}")

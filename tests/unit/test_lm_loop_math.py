"""Pure pieces of the LM loop: the LR schedule, parameter groups, byte windows."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from aegir.loops.lm import next_byte_loss, parameter_groups, warmup_cosine
from aegir.tasks.pretrain.windows import RandomWindowBatches, validation_windows


def test_warmup_cosine_hand_computed() -> None:
    assert warmup_cosine(0, 4, 14, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 14, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 14, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(9, 4, 14, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert warmup_cosine(14, 4, 14, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(100, 4, 14, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0, 10, 0.0) == pytest.approx(1.0)


def test_parameter_groups_decay_matrices_only() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.lin = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)
            self.w0 = nn.Parameter(torch.zeros(4))

    groups = parameter_groups(Tiny(), lr=1.0, weight_decay=0.1, w0_lr_mult=2.0)
    decay, no_decay, w0 = groups
    assert decay["weight_decay"] == 0.1 and len(decay["params"]) == 1  # lin.weight
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0  # emb, lin.bias, norm weight+bias
    assert w0["lr"] == 2.0 and len(w0["params"]) == 1


def test_next_byte_loss_is_log_vocab_for_uniform_logits() -> None:
    logits = torch.zeros(2, 5, 256)
    targets = torch.randint(0, 256, (2, 5))
    assert float(next_byte_loss(logits, targets)) == pytest.approx(math.log(256))
    assert next_byte_loss(logits, targets, reduction="none").shape == (2, 5)


def test_random_window_batches_are_a_function_of_seed_rank_and_index() -> None:
    data = torch.arange(1000)
    a = RandomWindowBatches(data, seq_len=16, batch_size=3, seed=7)
    b = RandomWindowBatches(data, seq_len=16, batch_size=3, seed=7, start_index=lambda: 5)
    first = [batch for _, batch in zip(range(8), a)]
    resumed = [batch for _, batch in zip(range(3), b)]
    for x, y in zip(first[5:], resumed):
        assert torch.equal(x, y)
    assert first[0].shape == (3, 17)
    # windows are contiguous slices of the data
    assert torch.equal(first[0][:, 1:] - first[0][:, :-1], torch.ones(3, 16, dtype=torch.long))
    other_rank = RandomWindowBatches(data, seq_len=16, batch_size=3, seed=7, rank=1)
    assert not torch.equal(next(iter(other_rank)), first[0])
    other_seed = RandomWindowBatches(data, seq_len=16, batch_size=3, seed=8)
    assert not torch.equal(next(iter(other_seed)), first[0])


def test_validation_windows_are_fixed_and_non_overlapping() -> None:
    data = torch.arange(100)
    windows = validation_windows(data, seq_len=9, n_windows=4)
    assert windows.shape == (4, 10)
    starts = windows[:, 0].tolist()
    assert starts == sorted(starts) and all(b - a >= 10 for a, b in zip(starts, starts[1:]))
    assert torch.equal(windows, validation_windows(data, seq_len=9, n_windows=4))
    assert validation_windows(data, seq_len=9, n_windows=50).shape[0] == 10

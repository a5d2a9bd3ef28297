"""Byte windows for next-byte prediction: seeded random training batches and fixed validation windows.

Training batch i is a pure function of (seed, rank, i): a run that resumes at step s asks for batch s*accum and
gets exactly the bytes the uninterrupted run saw, without saving any sampler state.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch


class RandomWindowBatches:
    """Endless iterable of [batch_size, seq_len + 1] long tensors cut at seeded random offsets.

    `start_index` is called when iteration starts (Lightning requests the loader after restoring a checkpoint),
    so a resumed run continues the batch sequence where the checkpoint left it.
    """

    def __init__(self, data: torch.Tensor, seq_len: int, batch_size: int, seed: int, rank: int = 0,
                 start_index: Callable[[], int] = lambda: 0) -> None:
        if data.numel() < seq_len + 2:
            raise ValueError(f"training data has {data.numel()} bytes, fewer than one window of {seq_len + 1}")
        self.data = data
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.start_index = start_index
        self._span = torch.arange(seq_len + 1)

    def batch(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.rank, index))
        offsets = torch.randint(0, self.data.numel() - self.seq_len - 1, (self.batch_size,), generator=generator)
        return self.data[offsets[:, None] + self._span].long()

    def __iter__(self) -> Iterator[torch.Tensor]:
        index = int(self.start_index())
        while True:
            yield self.batch(index)
            index += 1


def mix_seed(seed: int, rank: int, index: int) -> int:
    """A 63-bit generator seed that differs for every (seed, rank, index) (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + rank * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def validation_windows(data: torch.Tensor, seq_len: int, n_windows: int) -> torch.Tensor:
    """Up to n_windows non-overlapping [seq_len + 1] windows spread evenly over the validation bytes.

    Independent of the run seed, so every run of a configuration is scored on the same bytes."""
    width = seq_len + 1
    available = data.numel() // width
    if available == 0:
        raise ValueError(f"validation data has {data.numel()} bytes, fewer than one window of {width}")
    count = min(n_windows, available)
    starts = torch.linspace(0, available - 1, count).round().long() * width
    return data[starts[:, None] + torch.arange(width)].long()

"""Batches of task records for the loops that train on records (SFT, GRPO).

Batch i is a pure function of (seed, rank, i): a resumed run asks for the batch at its restored step and gets what
the uninterrupted run saw, without any sampler state in the checkpoint.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from aegir.tasks.pretrain.windows import mix_seed


class RecordBatches:
    """Endless iterable of record lists drawn with replacement."""

    def __init__(self, records: Sequence[Mapping[str, Any]], batch_size: int, seed: int, rank: int = 0,
                 start_index: Callable[[], int] = lambda: 0) -> None:
        if not records:
            raise ValueError("no records to draw batches from")
        self.records, self.batch_size, self.seed, self.rank = list(records), batch_size, seed, rank
        self.start_index = start_index

    def batch(self, index: int) -> list[Mapping[str, Any]]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.rank, index))
        picks = torch.randint(0, len(self.records), (self.batch_size,), generator=generator)
        return [self.records[i] for i in picks.tolist()]

    def __iter__(self) -> Iterator[list[Mapping[str, Any]]]:
        index = int(self.start_index())
        while True:
            yield self.batch(index)
            index += 1


class _Iterable(torch.utils.data.IterableDataset):
    def __init__(self, source: RecordBatches) -> None:
        self.source = source

    def __iter__(self) -> Iterator[list[Mapping[str, Any]]]:
        return iter(self.source)


def _as_is(batch: Any) -> Any:
    return batch


def record_loader(source: RecordBatches | Sequence[Sequence[Mapping[str, Any]]]) -> torch.utils.data.DataLoader:
    """A DataLoader that hands the loop each list of records untouched (no tensor collation)."""
    dataset = _Iterable(source) if isinstance(source, RecordBatches) else list(source)
    return torch.utils.data.DataLoader(dataset, batch_size=None, collate_fn=_as_is)

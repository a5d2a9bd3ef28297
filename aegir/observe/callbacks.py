"""Small Lightning callbacks of the run plumbing."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback


class ThreadsPerProcess(Callback):
    """Set torch's intra-op threads in every training process, spawned DDP workers included: two 2-thread
    processes on a 2-core machine oversubscribe it and run many times slower than two 1-thread processes."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        torch.set_num_threads(self.threads)

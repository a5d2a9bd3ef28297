"""Checkpoints written atomically: to a temporary file in the same directory, moved over the old one with
`os.replace` only once complete, so a run killed during a save keeps its previous `last.ckpt`.

A module of its own because it imports Lightning (aegir/run/trainer.py imports it only when a trainer is built), and
the class lives at module level so that DDP's spawned workers can unpickle the trainer's plugins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

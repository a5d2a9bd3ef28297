"""How a run writes and re-reads its Lightning checkpoints: atomically, and never by unpickling code.

A checkpoint is written to a temporary file in the same directory and moved over the old one with `os.replace`
only once it is complete, so a run killed during a save keeps its previous `last.ckpt`. Every read uses
`torch.load(weights_only=True)`: a planted checkpoint cannot run code, whatever torch's own default is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from aegir.errors import InputError


def atomic_checkpoint_io() -> Any:
    """Lightning's TorchCheckpointIO with an atomic save (Lightning is imported here: see aegir/run/trainer.py)."""
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

    return AtomicCheckpointIO()


def check_resumable(path: Path) -> None:
    """Refuse a checkpoint that cannot be read back (truncated, corrupt, or holding pickled objects) with one line,
    before anything in the run directory changes."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same answer for the user
        best = path.with_name("best.ckpt")
        other = f"; the best checkpoint is {best}" if best.is_file() and best != path else ""
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise InputError(f"resume: checkpoint {path} is corrupt or unsafe to load ({reason}){other}") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise InputError(f"resume: {path} is not a Lightning checkpoint (no state_dict)")

"""How a run re-reads its Lightning checkpoints: never by unpickling code.

Every read uses `torch.load(weights_only=True)`: a planted checkpoint cannot run code, whatever torch's own default
is. (The atomic write is aegir/run/atomic_io.py, which imports Lightning.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from aegir.errors import InputError


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

"""Reading model weights from a checkpoint file: shared by the byte models (aegir.models.build) and the Hugging Face
policy (aegir.models.hf_policy), which both initialise from an earlier stage's checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from aegir.errors import InputError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a Lightning .ckpt (`model.` / `policy.` prefix stripped) or a plain state-dict file."""
    if not path.is_file():
        raise InputError(f"model.pretrained: no such checkpoint file: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: the user's input is wrong
        raise InputError(f"model.pretrained: cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"model.pretrained: {path} holds no model state dict")
    for prefix in ("model.", "policy."):  # LM/SFT modules hold `model`, the GRPO module `policy` (+ `ref`)
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state

"""Reading model weights from a checkpoint file: shared by the byte models (aegir.models.build) and the Hugging Face
policy (aegir.models.hf_policy), which both initialise from an earlier stage's checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

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


def load_fitting_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: Any, *, strict: bool) -> None:
    """Load `state` into `model` after checking it fits: no unknown keys, no shape mismatch, and (strict) no
    missing key. A misfit is one InputError naming `model.pretrained`, the file and the first offending keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state)) if strict else []
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("shape mismatch", mismatched)) if keys)
        raise InputError(f"model.pretrained: {path} does not fit this model ({detail})")
    model.load_state_dict(dict(state), strict=strict)

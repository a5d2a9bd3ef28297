"""Build the model a config names, and initialise it from a pretrained checkpoint when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from aegir.errors import InputError
from aegir.tokenizer import VOCAB_SIZE


def build_model(model_cfg: Mapping[str, Any]) -> nn.Module:
    """The policy / backbone for `model.arch` (validated by aegir.config before this is called)."""
    arch = model_cfg["arch"]
    if model_cfg["vocab_size"] < VOCAB_SIZE:
        raise InputError(f"config error: model.vocab_size: {model_cfg['vocab_size']} is smaller than the "
                         f"tokenizer's {VOCAB_SIZE} ids (256 bytes + special tokens)")
    if arch == "rwkv7":
        from aegir.models.lm import ByteLM

        if model_cfg["d_model"] % model_cfg["head_size"]:
            raise InputError(f"config error: model.d_model: {model_cfg['d_model']} is not divisible by "
                             f"model.head_size {model_cfg['head_size']}")
        model: nn.Module = ByteLM(vocab_size=model_cfg["vocab_size"], d_model=model_cfg["d_model"],
                                  n_layers=model_cfg["n_layers"], head_size=model_cfg["head_size"],
                                  tie_embeddings=model_cfg["tie_embeddings"])
    else:  # aegir.config rejects unknown archs; this guards direct callers
        raise InputError(f"config error: model.arch: unknown architecture '{arch}'")
    if model_cfg.get("pretrained"):
        load_pretrained(model, Path(model_cfg["pretrained"]))
    return model


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied embedding / head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a Lightning .ckpt (`model.` prefix stripped) or a plain state-dict file."""
    if not path.is_file():
        raise InputError(f"model.pretrained: no such checkpoint file: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: the user's input is wrong
        raise InputError(f"model.pretrained: cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"model.pretrained: {path} holds no model state dict")
    if any(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return state


def load_pretrained(model: nn.Module, path: Path) -> None:
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("shape mismatch", mismatched)) if keys)
        raise InputError(f"model.pretrained: {path} does not fit this model ({detail})")
    model.load_state_dict(state)

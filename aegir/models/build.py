"""Build the model a config names, and initialise it from a pretrained checkpoint when asked."""

from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

from torch import nn

from aegir.config.schema import HFModelConfig, HNetModelConfig, RWKV7ModelConfig
from aegir.errors import InputError
from aegir.models.checkpoint import load_fitting_state, read_state_dict
from aegir.tokenizer import VOCAB_SIZE

if TYPE_CHECKING:
    from aegir.models.policy import Policy


ModelConfig = Union[RWKV7ModelConfig, HNetModelConfig, HFModelConfig]


def build_policy(model: ModelConfig, allowed_ids: Sequence[int] | None = None) -> "Policy":
    """The policy (model + tokenizer) the record-based loops train: a byte model, or a Hugging Face causal LM.

    `allowed_ids` restricts what a byte policy may emit (the toy task's digits); a Hugging Face policy always
    samples from its whole vocabulary."""
    if isinstance(model, HFModelConfig):
        from aegir.models.hf_policy import load_hf_policy

        if allowed_ids is not None:
            raise InputError("config error: task.restrict_vocab: a vocabulary restriction applies to byte models only; "
                             "pass task.restrict_vocab=false with model.arch=hf")
        return load_hf_policy(model)
    from aegir.models.policy import BytePolicy

    return BytePolicy(build_model(model), allowed_ids)


def build_model(model: ModelConfig) -> nn.Module:
    """The byte-level policy / backbone of a validated `model` section (`aegir.config.section_object`)."""
    if not is_dataclass(model):
        raise TypeError(f"build_model takes the typed model section (aegir.config.section_object), got "
                        f"{type(model).__name__}")
    if isinstance(model, HFModelConfig):
        raise InputError("config error: model.arch: this loop trains byte models (rwkv7, hnet); a Hugging Face "
                         "model serves the SFT and GRPO loops")
    if model.vocab_size < VOCAB_SIZE:
        raise InputError(f"config error: model.vocab_size: {model.vocab_size} is smaller than the "
                         f"tokenizer's {VOCAB_SIZE} ids (256 bytes + special tokens)")
    if isinstance(model, RWKV7ModelConfig):
        from aegir.models.lm import ByteLM

        if model.d_model % model.head_size:
            raise InputError(f"config error: model.d_model: {model.d_model} is not divisible by "
                             f"model.head_size {model.head_size}")
        built: nn.Module = ByteLM(vocab_size=model.vocab_size, d_model=model.d_model, n_layers=model.n_layers,
                                  head_size=model.head_size, tie_embeddings=model.tie_embeddings,
                                  compile_step=model.compile_step)
    else:
        built = build_hnet(model)
    if model.pretrained:
        load_pretrained(built, Path(model.pretrained))
    return built


def build_hnet(model: HNetModelConfig) -> nn.Module:
    """HNetLM from a validated `model` section. Every inconsistency of layout, widths, head size and targets is a
    one-line InputError naming the key, raised before any weights are allocated."""
    from aegir.models.hnet import HNetLM, parse_layout

    widths, layout, head_size = list(model.d_model), model.arch_layout, model.head_size
    try:
        spec = parse_layout(layout, widths)
    except ValueError as err:
        message = str(err)
        key = "model.arch_layout" if message.startswith("arch_layout") else "model.d_model"
        message = message[len("arch_layout "):] if message.startswith("arch_layout ") else message
        raise InputError(f"config error: {key}: {message}") from None
    if spec.is_innermost:
        raise InputError("config error: model.arch_layout: an H-Net needs at least one [encoder, inner, decoder] "
                         f"stage, got {layout!r} (use an rwkv7 model for an isotropic stack)")
    bad = [(s, d) for s, d in enumerate(widths) if d % head_size]
    if bad:
        stage, width = bad[0]
        raise InputError(f"config error: model.d_model: d_model[{stage}] = {width} is not divisible by "
                         f"model.head_size {head_size}")
    targets = list(model.target_compression)
    n_routed = spec.depth - 1
    if len(targets) != n_routed or any(not t > 1 for t in targets):
        raise InputError(f"config error: model.target_compression: needs {n_routed} value(s) > 1 (one per "
                         f"non-innermost stage of arch_layout, outer first), got {targets}")
    return HNetLM(vocab_size=model.vocab_size, d_model=widths, arch_layout=layout, head_size=head_size,
                  target_compression=targets, ratio_loss_weight=model.ratio_loss_weight,
                  tie_embeddings=model.tie_embeddings, compile_step=model.compile_step)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied embedding / head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def load_pretrained(model: nn.Module, path: Path) -> None:
    load_fitting_state(model, read_state_dict(path), path, strict=True)

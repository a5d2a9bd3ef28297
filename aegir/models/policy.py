"""The policy interface every record-based loop (SFT, GRPO, eval, audit, bench) talks to: a language model and its
tokenizer behind one protocol, so the loops hold no `if byte model / if Hugging Face model` branches.

Two families implement it:
- `BytePolicy` (this module): the byte-level research models (RWKV-7, H-Net) with the 264-id byte tokenizer; sampling
  and scoring run on their recurrent state exactly as `aegir.rl.rollout` does.
- `HFPolicy` (aegir/models/hf_policy.py): any Hugging Face causal LM, optionally with a peft LoRA adapter.

A policy is a plain object, not an `nn.Module`: the loops register `policy.model` (and `policy.reference`, a frozen
copy when the KL term needs one) as their own sub-modules, so Lightning moves, wraps (DDP) and checkpoints the
weights as before, under the same state-dict keys.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from aegir.rl.rollout import RolloutBatch, allowed_mask, completion_logprobs, sample_groups
from aegir.tokenizer import ASSISTANT_ID, EOS_ID, PAD_ID, SYSTEM_ID, USER_ID, ByteTokenizer

ChatPrompt = str | Sequence[Mapping[str, Any]]


@runtime_checkable
class Policy(Protocol):
    """What the loops need from a language model + tokenizer."""

    model: nn.Module                 # the trained network (registered by the loop: its weights are checkpointed)
    reference: nn.Module | None      # a frozen copy for the KL term, when `enable_reference` needed one
    pad_id: int                      # fills batches; never a target (masks come from lengths, not from ids)
    adapter_only: bool               # checkpoints hold only the trainable (adapter) weights, not the base model

    def encode_prompt(self, prompt: ChatPrompt) -> list[int]:
        """A record's prompt (plain text, or chat messages) as ids, ending where the assistant starts writing."""

    def encode_completion(self, text: str) -> list[int]:
        """A reference completion as ids, ending with the end-of-turn token (what SFT teaches the model to write)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Completion ids (without the end-of-turn token) as the raw text, kept as is in samples/*.jsonl."""

    def reward_text(self, text: str) -> str:
        """The part of a decoded completion the verifiers see (HF models: any <think> block removed)."""

    def completion_units(self, ids: Sequence[int]) -> int:
        """Bytes a completion's ids stand for (the end-of-turn token counts as one): the denominator of bpb, so
        bits per byte compare across tokenizers."""

    def sample(self, prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int, *, temperature: float,
               top_p: float, generator: torch.Generator | None) -> RolloutBatch:
        """`group_size` completions per prompt, group-contiguous, with the sampler's log-probs."""

    def completion_logprobs(self, batch: RolloutBatch, *, temperature: float, with_entropy: bool = False
                            ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced log-probs [N, L] of the completion tokens on logits / temperature (0 on padding), and
        optionally the per-token entropy; differentiable."""

    def enable_reference(self) -> nn.Module | None:
        """Prepare reference log-probs for a KL term; return a frozen module the loop must register, or None when
        no copy is needed (a LoRA model's reference is the same model with its adapter disabled)."""

    def reference_logprobs(self, batch: RolloutBatch, *, temperature: float) -> Tensor:
        """Log-probs of the batch's completions under the reference (no gradient)."""

    def sequence_logits(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits [B, T, V] of right-padded sequences (teacher forcing for SFT)."""

    def save_pretrained(self, out_dir: Path) -> bool:
        """Write the weights in the family's standard directory format (a PEFT adapter, or a Hugging Face model
        with its tokenizer); False when the family has none (byte models keep their Lightning checkpoints)."""


class BytePolicy:
    """RWKV-7 / H-Net byte models: role-marked byte prompts, recurrent-state sampling and shared-prompt scoring."""

    adapter_only = False
    pad_id = PAD_ID

    def __init__(self, model: nn.Module, allowed_ids: Sequence[int] | None = None) -> None:
        self.model = model
        self.reference: nn.Module | None = None
        self.allowed_ids = None if allowed_ids is None else list(allowed_ids)
        self.tokenizer = ByteTokenizer()

    # ------------------------------------------------------------------ text <-> ids
    def encode_prompt(self, prompt: ChatPrompt) -> list[int]:
        """A plain string prompt is its bytes; a chat prompt is role-marked messages plus the ASSISTANT marker
        (role markers are ids no text can produce, so a user message cannot forge a turn)."""
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt)
        roles = {"system": SYSTEM_ID, "user": USER_ID, "assistant": ASSISTANT_ID}
        ids: list[int] = []
        for message in prompt:
            ids.append(roles[str(message["role"])])
            ids.extend(self.tokenizer.encode(str(message["content"])))
        ids.append(ASSISTANT_ID)
        return ids

    def encode_completion(self, text: str) -> list[int]:
        return self.tokenizer.encode(text) + [EOS_ID]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def reward_text(self, text: str) -> str:
        return text

    def completion_units(self, ids: Sequence[int]) -> int:
        return len(ids)  # one token per byte, EOS counted as one

    # ------------------------------------------------------------------ sampling and scoring
    def allowed(self) -> Tensor:
        vocab = self.model.emb.weight.shape[0]  # type: ignore[union-attr]
        return allowed_mask(vocab, self.allowed_ids, device=self.model.emb.weight.device)  # type: ignore[union-attr]

    def sample(self, prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int, *, temperature: float,
               top_p: float, generator: torch.Generator | None) -> RolloutBatch:
        return sample_groups(self.model, prompts, group_size, max_new_tokens, temperature=temperature, top_p=top_p,
                             allowed=self.allowed(), generator=generator)

    def completion_logprobs(self, batch: RolloutBatch, *, temperature: float, with_entropy: bool = False
                            ) -> tuple[Tensor, Tensor | None]:
        return completion_logprobs(self.model, batch, temperature=temperature, allowed=self.allowed(),
                                   with_entropy=with_entropy)

    def enable_reference(self) -> nn.Module | None:
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        return self.reference

    @torch.no_grad()
    def reference_logprobs(self, batch: RolloutBatch, *, temperature: float) -> Tensor:
        assert self.reference is not None, "enable_reference() first"
        logp, _ = completion_logprobs(self.reference, batch, temperature=temperature, allowed=self.allowed())
        return logp

    def sequence_logits(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        # Right padding never reaches a real position of a causal model, so the mask is not needed here.
        logits, _ = self.model(ids)
        return logits

    def save_pretrained(self, out_dir: Path) -> bool:
        return False

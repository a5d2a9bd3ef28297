"""Rollouts for GRPO on the byte models (RWKV-7, H-Net): sample `group_size` completions per prompt with the
recurrent state, and score completions' log-probabilities under a policy by teacher forcing. Hugging Face policies
sample with their KV cache (aegir/models/hf_policy.py) and share `RolloutBatch` and `score_completion_logits`.

Each distinct prompt is prefilled once (one chunked forward per prompt length) and its state is repeated for its
group, so a group of G samples costs one prompt pass plus G rows of O(1)-per-token decoding. Log-probabilities are
computed on logits / temperature over the allowed vocabulary, the distribution the sampler drew from (the TRL
convention; docs/grpo.md, Rollouts), so the importance ratio starts at exactly 1 on-policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from aegir.models.lm import device_generator, sample_next
from aegir.tokenizer import EOS_ID, PAD_ID


class RecurrentLM(Protocol):
    def __call__(self, ids: Tensor, state: object | None = None) -> tuple[Tensor, object]: ...
    def step(self, ids_t: Tensor, state: object) -> tuple[Tensor, object]: ...
    def initial_state(self, batch: int) -> object: ...


@dataclass
class RolloutBatch:
    """N = n_prompts x group_size completions, group-contiguous (rows g*G .. g*G+G-1 share prompt g)."""

    prompt_ids: list[Tensor]      # N 1-D long tensors
    completion_ids: Tensor        # [N, L] long, PAD after the end
    mask: Tensor                  # [N, L] float: 1 on completion tokens, EOS included
    lengths: Tensor               # [N] long: completion tokens incl. EOS
    truncated: Tensor             # [N] bool: reached max_completion_length without EOS
    sampler_logp: Tensor          # [N, L] float: log-prob of each sampled token under the sampler

    @property
    def size(self) -> int:
        return self.completion_ids.shape[0]

    def select(self, rows: Tensor) -> "RolloutBatch":
        """A sub-batch (micro-batching, dropping zero-variance groups)."""
        index = rows.tolist()
        return RolloutBatch([self.prompt_ids[i] for i in index], self.completion_ids[rows], self.mask[rows],
                            self.lengths[rows], self.truncated[rows], self.sampler_logp[rows])

    def concat(self, other: "RolloutBatch") -> "RolloutBatch":
        """This batch's rows followed by `other`'s (dynamic sampling refills), padded to the longer completion."""
        width = max(self.completion_ids.shape[1], other.completion_ids.shape[1])

        def cat(a: Tensor, b: Tensor, value: float) -> Tensor:
            return torch.cat([F.pad(t, (0, width - t.shape[1]), value=value) for t in (a, b)])

        return RolloutBatch(self.prompt_ids + other.prompt_ids, cat(self.completion_ids, other.completion_ids, PAD_ID),
                            cat(self.mask, other.mask, 0.0), torch.cat([self.lengths, other.lengths]),
                            torch.cat([self.truncated, other.truncated]),
                            cat(self.sampler_logp, other.sampler_logp, 0.0))


def allowed_mask(vocab_size: int, allowed_ids: Sequence[int] | None, device: torch.device | None = None) -> Tensor:
    """Boolean [V]: the tokens a policy may emit. Default: the 256 bytes and EOS (never PAD, BOS or the unused
    embedding rows above the tokenizer's ids)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    ids = list(range(256)) + [EOS_ID] if allowed_ids is None else list(allowed_ids)
    mask[torch.tensor(ids, dtype=torch.long, device=device)] = True
    return mask


def _masked(logits: Tensor, allowed: Tensor | None, temperature: float) -> Tensor:
    """logits / temperature (greedy decoding, temperature 0, scores the plain logits), restricted to `allowed`
    (None: the whole vocabulary)."""
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    return scaled if allowed is None else scaled.masked_fill(~allowed, float("-inf"))


def checked_prompts(prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int,
                    device: torch.device) -> list[Tensor]:
    """The prompts as id tensors on `device`, after the argument checks every policy's sampler makes."""
    if group_size < 1 or max_new_tokens < 1:
        raise ValueError(f"group_size and max_new_tokens must be >= 1, got {group_size}, {max_new_tokens}")
    tensors = [torch.tensor(list(p), dtype=torch.long, device=device) for p in prompts]
    if any(p.numel() == 0 for p in tensors):
        raise ValueError("every prompt needs at least one token")
    return tensors


def draw_tokens(logits: Tensor, allowed: Tensor | None, temperature: float, top_p: float,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """One sampling step of every policy: the next token per row [B] from logits / temperature over the allowed
    vocabulary (greedy at temperature 0, top-p nucleus otherwise), and its log-prob under that same distribution --
    the number the teacher-forced scorer reproduces, so the importance ratio starts at 1."""
    scaled = _masked(logits, allowed, temperature)
    token = sample_next(scaled, temperature=1.0 if temperature > 0 else 0.0, top_p=top_p, generator=generator)
    return token, F.log_softmax(scaled, dim=-1).gather(1, token[:, None]).squeeze(1)


@torch.no_grad()
def sample_groups(model: RecurrentLM, prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int, *,
                  temperature: float = 1.0, top_p: float = 1.0, allowed: Tensor,
                  generator: torch.Generator | None = None) -> RolloutBatch:
    """Sample `group_size` completions for each prompt (token id lists, >= 1 token each)."""
    device = allowed.device
    prompt_tensors = checked_prompts(prompts, group_size, max_new_tokens, device)
    last_logits, states = _prefill(model, prompt_tensors)
    generator = device_generator(generator, device)
    rows = torch.arange(len(prompts), device=device).repeat_interleave(group_size)
    state = states.index_rows(rows)
    logits = last_logits[rows]
    n = rows.numel()
    tokens, logps = [], []
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        token, logp = draw_tokens(logits, allowed, temperature, top_p, generator)
        tokens.append(token.masked_fill(done, PAD_ID))
        logps.append(logp.masked_fill(done, 0.0))
        done = done | (token == EOS_ID)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        logits, state = model.step(token.masked_fill(done, EOS_ID), state)
    completion = torch.stack(tokens, dim=1)
    mask = (completion != PAD_ID).float()
    lengths = mask.sum(dim=1).long()
    truncated = ~(completion == EOS_ID).any(dim=1)
    return RolloutBatch([prompt_tensors[i] for i in rows.tolist()], completion, mask, lengths, truncated,
                        torch.stack(logps, dim=1))


def _distinct_prompts(prompt_ids: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
    """The distinct prompts (first-seen order) and, per row, the index of its prompt among them."""
    if any(p.numel() == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    index: dict[bytes, int] = {}
    distinct: list[Tensor] = []
    rows = []
    for prompt in prompt_ids:
        key = prompt.detach().cpu().numpy().tobytes()
        if key not in index:
            index[key] = len(distinct)
            distinct.append(prompt)
        rows.append(index[key])
    return distinct, torch.tensor(rows, dtype=torch.long, device=prompt_ids[0].device)


def _prefill(model: RecurrentLM, prompts: list[Tensor]) -> tuple[Tensor, object]:
    """Run every prompt once; prompts of equal length share one batched forward. Returns the logits after each
    prompt's last token [P, V] and the states of all prompts, in prompt order."""
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(prompt.numel(), []).append(index)
    order: list[int] = []
    logits_parts, state_parts = [], []
    for indices in by_length.values():
        # An explicit start state makes every model return its end state, with autograd on too (the H-Net skips it
        # in a plain training forward); it is the state a `None` start would use.
        logits, state = model(torch.stack([prompts[i] for i in indices]), model.initial_state(len(indices)))
        logits_parts.append(logits[:, -1])
        state_parts.append(state)
        order.extend(indices)
    state_cls = type(state_parts[0])
    states = state_cls.cat(state_parts)  # type: ignore[attr-defined]
    inverse = torch.empty(len(order), dtype=torch.long, device=prompts[0].device)
    inverse[torch.tensor(order, device=prompts[0].device)] = torch.arange(len(order), device=prompts[0].device)
    return torch.cat(logits_parts)[inverse], states.index_rows(inverse)


def completion_logprobs(model: RecurrentLM, batch: RolloutBatch, *, temperature: float, allowed: Tensor,
                        with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Teacher-forced log-probs [N, L] of the batch's completion tokens (0 on padding), and optionally the
    per-token entropy [N, L] of the same distribution. Differentiable: this is the policy term of the loss.

    Each distinct prompt is run once (with autograd) and its end state is shared by the rows that continue it; the
    completions then run as one batch from those states (completion PAD lies after each row's end, and a causal
    model never looks ahead into it). The numbers and gradients are those of one right-padded pass over every
    prompt + completion (tests/unit/test_rollout.py), at a fraction of the cost when G rows share a prompt that is
    longer than the completions (V4.2: ~700-byte prompts, ~120-byte completions) and when prompt lengths differ."""
    prompts, rows = _distinct_prompts(batch.prompt_ids)
    last_logits, states = _prefill(model, prompts)  # [U, V]: the prediction of each row's first completion token
    picked = last_logits[rows].unsqueeze(1)
    if batch.completion_ids.shape[1] > 1:  # completion token j >= 1 is predicted from completion token j - 1
        rest, _ = model(batch.completion_ids[:, :-1], states.index_rows(rows))  # type: ignore[attr-defined]
        picked = torch.cat([picked, rest], dim=1)
    return score_completion_logits(picked, batch, temperature=temperature, allowed=allowed, with_entropy=with_entropy)


def score_completion_logits(picked: Tensor, batch: RolloutBatch, *, temperature: float, allowed: Tensor | None,
                            with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Log-probs [N, L] (and entropy) of the batch's completion tokens from the logits that predict them [N, L, V]:
    temperature and the allowed vocabulary (None: all of it) applied as the sampler did, 0 on padding."""
    log_probs = F.log_softmax(_masked(picked, allowed, temperature), dim=-1)
    mask = batch.mask.to(picked.device)
    targets = batch.completion_ids.to(picked.device).masked_fill(mask == 0, 0)  # any id: padding is zeroed below
    logp = torch.where(mask > 0, log_probs.gather(2, targets[..., None]).squeeze(2), 0.0)
    entropy = None
    if with_entropy:
        probs = log_probs.exp()
        finite = log_probs if allowed is None else log_probs.masked_fill(~allowed, 0.0)
        entropy = -(probs * finite).sum(-1) * mask
    return logp, entropy

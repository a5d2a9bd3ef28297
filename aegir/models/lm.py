"""Byte-level language model: embedding -> RWKV-7 stack -> ln_out -> head, plus recurrent-state generation.

Training runs the chunked WKV over whole sequences; `generate` runs the prompt through that forward once and then
advances the O(1)-per-token recurrent state, so the cost of a new token does not grow with the sequence length.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aegir.models.rwkv7 import RWKV7Stack, RWKV7State


def sample_next(
    logits: Tensor, temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Pick the next token per row from logits [B, V]: greedy when temperature == 0, else top-p nucleus sampling.

    The nucleus keeps the smallest set of most likely tokens whose probability mass reaches top_p (always at least
    the most likely one). Pure: the only randomness comes from `generator`.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator on `device` for sampling there. The loops seed CPU generators (pure functions of seed, rank,
    step); on a GPU, `torch.multinomial` needs a CUDA generator, so one is seeded from the CPU stream. On the CPU
    the generator is returned unchanged (the CPU stream, and so every CPU result, stays as it was)."""
    if generator is None or generator.device.type == torch.device(device).type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def check_generate_args(prompt_ids: Tensor, max_new_tokens: int) -> None:
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ValueError(f"prompt_ids must be [B, T0] with T0 >= 1, got {tuple(prompt_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def continue_sampling(step: Callable[[Tensor, Any], tuple[Tensor, Any]], prompt_ids: Tensor, next_logits: Tensor,
                      state: Any, max_new_tokens: int, temperature: float, top_p: float, eos_id: int | None,
                      generator: torch.Generator | None) -> Tensor:
    """The decoding loop every recurrent model shares, after its own prefill: sample, append, step the state.
    Rows that emitted `eos_id` are padded with it; stops early once every row is done."""
    tokens = [prompt_ids]
    done = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
    for i in range(max_new_tokens):
        token = sample_next(next_logits, temperature, top_p, generator)
        if eos_id is not None:
            token = token.masked_fill(done, eos_id)
            done = done | (token == eos_id)
        tokens.append(token.unsqueeze(1))
        if i == max_new_tokens - 1 or (eos_id is not None and bool(done.all())):
            break
        next_logits, state = step(token, state)
    return torch.cat(tokens, dim=1)


@functools.cache
def compiled_step(step: Callable[..., Any], device_type: str) -> Callable[..., Any]:
    """`step` (an unbound model method) under torch.compile, for decoding: a token step is ~100 small ops whose
    per-op overhead costs more than their math at small batch. On CUDA the mode is "reduce-overhead", which
    replays the step as a CUDA graph. Dynamo guards on the model and the shapes, so each model instance and batch
    size compiles once (minutes on a loaded CPU). When torch.compile is unavailable or a compilation fails (no C++
    compiler, an unsupported platform), a warning is given once and every call runs `step` eagerly."""
    mode = "reduce-overhead" if device_type == "cuda" else None
    try:
        # dynamic=False: one graph specialised per batch size (decoding sees a handful), not a symbolic-batch graph
        # after the second size, whose kernels are slower.
        compiled = torch.compile(step, mode=mode, dynamic=False)
    except Exception as err:  # torch.compile itself unsupported here (e.g. an old Python)
        warnings.warn(f"model.compile_step: torch.compile is unavailable ({err}); decoding eagerly", stacklevel=2)
        return step
    failed = False

    def run(*args: Any) -> Any:
        nonlocal failed
        if not failed:
            try:
                return compiled(*args)
            except Exception as err:  # a compile error: the eager step is the same math
                failed = True
                warnings.warn(f"model.compile_step: compiling the decoding step failed ({type(err).__name__}: "
                              f"{str(err)[:200]}); decoding eagerly", stacklevel=2)
        return step(*args)

    return run


def run_step(model: Any, step: Callable[..., Any], compile_step: bool, ids_t: Tensor, state: Any) -> Any:
    """`step(model, ids_t, state)`, compiled when `compile_step` is set and autograd is off (decoding; a step
    that records gradients stays eager)."""
    if compile_step and not torch.is_grad_enabled():
        return compiled_step(step, ids_t.device.type)(model, ids_t, state)
    return step(model, ids_t, state)


class ByteLM(nn.Module):
    """RWKV-7 language model over a small vocabulary (bytes + specials), with an optionally tied head.

    Init follows BlinkDL (docs/models.md, Initialisation): embedding U(±1e-4) (the first block's ln0 rescales it),
    untied head orthogonal with gain 0.5·sqrt(V/C) (0.5 when V <= C). With a tied head the initial logits are ~0,
    i.e. a uniform prediction; the head/embedding gradient is O(1), so training leaves that point at once (see
    tests/unit/test_lm.py).
    """

    def __init__(
        self, vocab_size: int, d_model: int, n_layers: int, head_size: int = 64, tie_embeddings: bool = True,
        compile_step: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size, self.d_model, self.tie_embeddings = vocab_size, d_model, tie_embeddings
        self.compile_step = compile_step
        self.emb = nn.Embedding(vocab_size, d_model)
        self.body = RWKV7Stack(d_model, n_layers, head_size)
        self.ln_out = nn.LayerNorm(d_model)
        self.head = None if tie_embeddings else nn.Linear(d_model, vocab_size, bias=False)
        with torch.no_grad():
            nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
            if self.head is not None:
                gain = 0.5 * math.sqrt(vocab_size / d_model) if vocab_size > d_model else 0.5
                nn.init.orthogonal_(self.head.weight, gain=gain)

    def num_parameters(self) -> int:
        """Distinct trainable parameters (a tied embedding/head is counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def initial_state(self, batch: int) -> RWKV7State:
        return self.body.initial_state(batch)

    def logits(self, hidden: Tensor) -> Tensor:
        """ln_out then the (possibly tied) head."""
        hidden = self.ln_out(hidden)
        weight = self.emb.weight if self.head is None else self.head.weight
        return F.linear(hidden, weight)

    def forward(self, ids: Tensor, state: RWKV7State | None = None) -> tuple[Tensor, RWKV7State]:
        """ids [B, T] long -> (logits [B, T, V], state after the last position)."""
        hidden, state = self.body(self.emb(ids), state)
        return self.logits(hidden), state

    def step(self, ids_t: Tensor, state: RWKV7State) -> tuple[Tensor, RWKV7State]:
        """One token per row: ids_t [B] -> (logits [B, V], new state); compiled with `compile_step` (decoding)."""
        return run_step(self, ByteLM._eager_step, self.compile_step, ids_t, state)

    def _eager_step(self, ids_t: Tensor, state: RWKV7State) -> tuple[Tensor, RWKV7State]:
        hidden, state = self.body.step(self.emb(ids_t), state)
        return self.logits(hidden), state

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue prompt_ids [B, T0] (T0 >= 1) by up to max_new_tokens tokens -> LongTensor [B, T0 + n_new].

        Rows that emitted `eos_id` are padded with it afterwards; generation stops early once every row is done,
        so n_new <= max_new_tokens.
        """
        check_generate_args(prompt_ids, max_new_tokens)
        if max_new_tokens == 0:
            return prompt_ids.clone()
        hidden, state = self.body(self.emb(prompt_ids))  # one chunked pass over the prompt
        return continue_sampling(self.step, prompt_ids, self.logits(hidden[:, -1]), state, max_new_tokens,
                                 temperature, top_p, eos_id, generator)

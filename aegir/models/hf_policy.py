"""Any Hugging Face causal LM as a policy, optionally with a peft LoRA adapter (`model=hf` and its presets).

Sampling is Aegir's own loop over the model's KV cache rather than `model.generate`: the logits are processed exactly
as the teacher-forced scorer processes them (logits / temperature, nucleus top-p on the same distribution, nothing
from the checkpoint's generation_config such as a repetition penalty), so the sampler's log-probs equal the trainer's
and the importance ratio starts at 1; and the random stream is the loop's `torch.Generator`, a pure function of
(seed, rank, step), as for the byte models.

Batches are left-padded for prompts (generation appends on the right) and right-padded for completions; position
ids count real tokens only, so a padded row computes what it would alone. Masks always come from lengths, never
from `ids == pad_id` (a pad equal to EOS would otherwise mask every real EOS).

With LoRA the KL reference is the same model with the adapter disabled (no second copy in memory), and checkpoints
hold only the adapter weights.
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from aegir.config.schema import HFModelConfig
from aegir.errors import InputError
from aegir.models.checkpoint import load_fitting_state, read_state_dict
from aegir.models.lm import device_generator
from aegir.models.policy import ChatPrompt
from aegir.rl.rollout import RolloutBatch, checked_prompts, draw_tokens, score_completion_logits

# peft asks transformers a deprecated question on every adapter call (transformers 5.2x); not ours to act on.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)

_THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
_OPEN_THINK = re.compile(r"<think>.*", re.DOTALL)


def strip_thinking(text: str) -> str:
    """Remove <think>…</think> blocks (and an unterminated trailing one): reasoning is not the answer."""
    return _OPEN_THINK.sub("", _THINK_BLOCK.sub("", text)).strip()


def left_pad(rows: Sequence[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    """1-D id tensors -> ids [N, P] and attention mask [N, P], padded on the left."""
    width = max(int(r.numel()) for r in rows)
    device = rows[0].device
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        n = int(row.numel())
        ids[i, width - n:] = row
        mask[i, width - n:] = 1
    return ids, mask


def positions(mask: Tensor) -> Tensor:
    """Position ids that count only real tokens (0 at each row's first real token)."""
    return (mask.cumsum(-1) - 1).clamp_min(0)


class HFPolicy:
    """A `transformers` causal LM (a `PeftModel` when LoRA is on) with its tokenizer and chat template."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, lora: bool, strip_think: bool = True,
                 enable_thinking: bool | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.lora = lora
        self.adapter_only = lora
        self.reference: nn.Module | None = None
        self._reference_is_base = False
        self.strip_think = strip_think
        self.template_kwargs = {} if enable_thinking is None else {"enable_thinking": bool(enable_thinking)}
        self.eos_ids = end_of_turn_ids(tokenizer, model)
        self.end_of_turn_id = self.eos_ids[0]
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_of_turn_id)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    # ------------------------------------------------------------------ text <-> ids
    def encode_prompt(self, prompt: ChatPrompt) -> list[int]:
        """The chat template with the generation prompt (a plain string is one user message)."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else \
            [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  **self.template_kwargs)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_completion(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.end_of_turn_id]

    def decode(self, ids: Sequence[int]) -> str:
        kept = [int(i) for i in ids if int(i) not in self.eos_ids]
        return self.tokenizer.decode(kept, skip_special_tokens=False)

    def reward_text(self, text: str) -> str:
        return strip_thinking(text) if self.strip_think else text

    def completion_units(self, ids: Sequence[int]) -> int:
        ends = sum(1 for i in ids if int(i) in self.eos_ids)
        return len(self.decode(ids).encode("utf-8")) + ends

    # ------------------------------------------------------------------ forward passes
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward(self, module: nn.Module, ids: Tensor, mask: Tensor, pos: Tensor, *, keep: int = 0,
                 use_cache: bool = False, cache: Any = None) -> Any:
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
                                  "logits_to_keep": keep, "use_cache": use_cache}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        return module(**kwargs)

    @staticmethod
    def _cache_of(output: Any) -> Any:
        return output["cache"] if "cache" in output else output["past_key_values"]

    @torch.no_grad()
    def sample(self, prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int, *, temperature: float,
               top_p: float, generator: torch.Generator | None) -> RolloutBatch:
        """`group_size` completions per prompt with the KV cache; stops a row at any end-of-turn id."""
        device = self.device
        prompt_tensors = checked_prompts(prompts, group_size, max_new_tokens, device)
        rows = [prompt_tensors[i] for i in range(len(prompts)) for _ in range(group_size)]
        ids, mask = left_pad(rows, self.pad_id)
        pos = positions(mask)
        out = self._forward(self.model, ids, mask, pos, keep=1, use_cache=True)
        cache, logits = self._cache_of(out), out.logits[:, -1]
        generator = device_generator(generator, device)
        eos = torch.tensor(self.eos_ids, device=device)
        n = len(rows)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        tokens, logps = [], []
        for t in range(max_new_tokens):
            token, logp = draw_tokens(logits, None, temperature, top_p, generator)
            tokens.append(token.masked_fill(done, self.pad_id))
            logps.append(logp.masked_fill(done, 0.0))
            done = done | torch.isin(token, eos)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
            pos = pos[:, -1:] + 1
            out = self._forward(self.model, token.masked_fill(done, self.pad_id)[:, None], mask, pos, keep=1,
                                use_cache=True, cache=cache)
            cache, logits = self._cache_of(out), out.logits[:, -1]
        completion = torch.stack(tokens, dim=1)
        ended = torch.isin(completion, eos)
        # length = tokens up to and including the first end-of-turn id (all of them when none was emitted)
        first_end = torch.where(ended.any(1), ended.float().argmax(1), torch.full_like(ended[:, 0], -1, dtype=torch.long))
        lengths = torch.where(first_end >= 0, first_end + 1, torch.full_like(first_end, completion.shape[1]))
        width = torch.arange(completion.shape[1], device=device)
        completion_mask = (width[None, :] < lengths[:, None]).float()
        return RolloutBatch(rows, completion, completion_mask, lengths, ~ended.any(1), torch.stack(logps, dim=1))

    def _scoring_logits(self, module: nn.Module, batch: RolloutBatch) -> Tensor:
        """Logits [N, L, V] predicting each completion token: left-padded prompt + right-padded completion, one
        forward, the LM head applied only to the last L + 1 positions."""
        prompts, prompt_mask = left_pad(batch.prompt_ids, self.pad_id)
        completion = batch.completion_ids.to(prompts.device)
        completion_mask = batch.mask.to(prompts.device)
        ids = torch.cat([prompts, completion.masked_fill(completion_mask == 0, self.pad_id)], dim=1)
        mask = torch.cat([prompt_mask, completion_mask.long()], dim=1)
        width = completion.shape[1]
        logits = self._forward(module, ids, mask, positions(mask), keep=width + 1).logits
        return logits[:, :-1]

    def completion_logprobs(self, batch: RolloutBatch, *, temperature: float, with_entropy: bool = False
                            ) -> tuple[Tensor, Tensor | None]:
        return score_completion_logits(self._scoring_logits(self.model, batch), batch, temperature=temperature,
                                       allowed=None, with_entropy=with_entropy)

    def enable_reference(self) -> nn.Module | None:
        """LoRA: the adapter disabled is the reference (it starts at B = 0, so it is the initial policy); full
        fine-tuning: a frozen copy."""
        if self.lora:
            self._reference_is_base = True
            return None
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        return self.reference

    @torch.no_grad()
    def reference_logprobs(self, batch: RolloutBatch, *, temperature: float) -> Tensor:
        if self._reference_is_base:
            with self.model.disable_adapter():  # type: ignore[operator]
                logits = self._scoring_logits(self.model, batch)
        else:
            assert self.reference is not None, "enable_reference() first"
            logits = self._scoring_logits(self.reference, batch)
        logp, _ = score_completion_logits(logits, batch, temperature=temperature, allowed=None)
        return logp

    def sequence_logits(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=ids, attention_mask=attention_mask).logits

    # ------------------------------------------------------------------ files
    def save_pretrained(self, out_dir: Path) -> bool:
        """A LoRA policy writes a standard PEFT adapter directory (loadable with `PeftModel.from_pretrained` on
        the base model); a fully fine-tuned one the whole model. The tokenizer goes alongside in both cases."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out_dir))
        self.tokenizer.save_pretrained(str(out_dir))
        return True


def end_of_turn_ids(tokenizer: Any, model: nn.Module) -> list[int]:
    """Every id that ends a completion: `<|im_end|>` first when the vocabulary has it (ChatML's end of an assistant
    turn, what SFT appends), then the tokenizer's EOS and the generation config's EOS list (base checkpoints often
    use `<|endoftext|>` there and never emit it after a ChatML answer)."""
    ids: list[int] = []
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    candidates: list[Any] = [im_end, tokenizer.eos_token_id]
    generation = getattr(model, "generation_config", None)
    extra = getattr(generation, "eos_token_id", None)
    candidates.extend(extra if isinstance(extra, (list, tuple)) else [extra])
    for candidate in candidates:
        if candidate is not None and int(candidate) not in ids:
            ids.append(int(candidate))
    if not ids:
        raise ValueError("the tokenizer defines no EOS token and has no <|im_end|>: generation could never stop")
    return ids


# ---------------------------------------------------------------------------------------------------------- loading
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def load_hf_policy(cfg: HFModelConfig) -> HFPolicy:
    """The policy `model=hf` describes (a validated `model` section): tokenizer, model, LoRA adapter, and the
    weights of an earlier stage's checkpoint when `model.pretrained` is set. Any way the model cannot be had is
    one InputError naming `model.name_or_path` and how to obtain it."""
    source = cfg.name_or_path
    if cfg.create_tiny and not (Path(source) / "config.json").is_file():
        from aegir.models.hf_tiny import ensure_tiny_model

        ensure_tiny_model(source)
    local = Path(source).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise InputError(f"model.name_or_path: {source} has no config.json: point it at a Hugging Face model "
                         "directory (config.json, weights, tokenizer files)")
    tokenizer, model = _from_pretrained(cfg, source)
    if cfg.chat_template:
        template = Path(cfg.chat_template)
        if not template.is_file():
            raise InputError(f"model.chat_template: no such file: {template}")
        tokenizer.chat_template = template.read_text(encoding="utf-8")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"model.chat_template: the tokenizer of {source} has no chat template; pass "
                         "model.chat_template=FILE (a Jinja chat template)")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:  # TRL's choice: EOS doubles as pad (masks come from lengths here)
        tokenizer.pad_token = tokenizer.eos_token
    state = _pretrained_state(cfg)
    base_keys: dict[str, Tensor] = {}
    if state is not None:
        base_keys = {k: v for k, v in state.items() if "lora_" not in k}
        if base_keys:
            _load_into(model, base_keys, cfg.pretrained, strict=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    lora = cfg.lora.enabled
    if lora:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora.target_modules
        targets = targets if isinstance(targets, str) else [str(t) for t in targets]
        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=targets, bias=cfg.lora.bias, task_type="CAUSAL_LM"))
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()  # a frozen base needs a grad-carrying input under checkpointing
        adapter = {k: v for k, v in (state or {}).items() if "lora_" in k}
        if adapter:
            _load_into(model, adapter, cfg.pretrained, strict=False)
        exported_base = Path(cfg.pretrained).parent / "best" if state and base_keys else None
        if exported_base is not None and (exported_base / "config.json").is_file():
            # The adapter trains on an earlier stage's weights: record that stage's exported model as its base, so
            # the adapter directory this run exports loads on the right weights.
            model.peft_config["default"].base_model_name_or_path = str(exported_base.resolve())
    model.train()  # from_pretrained returns eval mode; the loops expect a module built for training, as byte models are
    return HFPolicy(model, tokenizer, lora=lora, strip_think=cfg.strip_thinking,
                    enable_thinking=cfg.enable_thinking)


def _from_pretrained(cfg: HFModelConfig, source: str) -> tuple[Any, nn.Module]:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - transformers is a dependency
        raise InputError(f"model.arch=hf needs transformers and peft: pip install -e . ({err})") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar would interleave with the run's own log lines
    common = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    dtype = "auto" if cfg.dtype == "auto" else DTYPES[cfg.dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype,
                                                     attn_implementation=cfg.attn_implementation, **common)
    except (OSError, ValueError) as err:
        text = " ".join(str(err).split())
        if "couldn't connect" in text or "offline" in text.lower() or "cached files" in text:
            reason = "not in the local Hugging Face cache, and the hub cannot be reached"
        else:
            reason = text if len(text) <= 120 else text[:117] + "..."
        raise InputError(
            f"model.name_or_path: cannot load '{source}': {reason}; run `hf download {source}` once on a connected "
            "machine (it fills the Hugging Face cache), or set model.name_or_path to a local model directory"
        ) from None
    return tokenizer, model


def _pretrained_state(cfg: HFModelConfig) -> dict[str, Tensor] | None:
    """Weights of an earlier stage (a Lightning .ckpt of an SFT or GRPO run on this model), prefixes stripped."""
    if not cfg.pretrained:
        return None
    return read_state_dict(Path(cfg.pretrained))


def _load_into(model: nn.Module, state: dict[str, Tensor], path: Any, *, strict: bool) -> None:
    load_fitting_state(model, state, path, strict=strict)


def load_checkpoint_weights(policy: HFPolicy, path: Path) -> None:
    """Load a run's checkpoint (a Lightning .ckpt) into a policy built from that run's config: the adapter of a
    LoRA run (the base came from the config), or every weight of a fully fine-tuned one."""
    _load_into(policy.model, read_state_dict(Path(path)), path, strict=not policy.adapter_only)

"""What the observatory reads from a model on the probe set, for every loop and both model families.

One forward pass per batch of probes (teacher forcing, no gradient, eval mode, the RNG streams untouched) gives:
mean-pooled hidden states at a middle block and at the final norm, and for every scored position the top-1
confidence, whether the top-1 token is the target, the entropy and the target's log-prob. Greedy decoding agrees
with the canonical answer exactly up to the first position where the top-1 token under teacher forcing differs from
it, so that position is where a greedy generation first diverges (`first_divergence`), with no generation needed.

Loops and families are told apart by what the LightningModule exposes (docs/observatory.md, Loops): `lm` (a
Policy: SFT, GRPO), `model` (a bare byte LM: pretraining), or `head` + `features` (classification).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aegir.observe.dynamics_math import entropy_from_logits, first_divergence, mean_pool

_LAYER_LISTS = ("layers", "blocks", "h")
_FINAL_NORMS = ("ln_out", "norm", "ln_f", "final_layernorm")


@dataclass
class Readout:
    """The probe set's read-out at one snapshot (rows of `last` / `middle` follow the probe order)."""

    last: np.ndarray
    middle: np.ndarray
    layers: dict[str, str]
    conf: np.ndarray            # [M] top-1 probability of every scored position
    correct: np.ndarray         # [M] 1.0 where the top-1 token (label) is the target
    entropy: np.ndarray         # [M] nats
    position: np.ndarray        # [M] index of the position within its probe's scored span
    probe: np.ndarray           # [M] index of the probe
    max_entropy: float          # log of the number of outcomes (vocabulary, allowed tokens or labels)
    answer_logprobs: dict[str, list[float]] = field(default_factory=dict)
    divergence: dict[str, int | None] = field(default_factory=dict)

    def skill_accuracy(self, probes: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Mean top-1 accuracy over the scored positions of each skill's probes."""
        sums: dict[str, list[float]] = {}
        for p, ok in zip(self.probe.tolist(), self.correct.tolist()):
            sums.setdefault(str(probes[p]["skill"]), []).append(ok)
        return {skill: float(np.mean(v)) for skill, v in sorted(sums.items())}


def policy_of(module: Any) -> Any:
    """The Policy behind a loop: `module.lm` (SFT, GRPO), or a BytePolicy over `module.model` (pretraining)."""
    policy = getattr(module, "lm", None)
    if policy is not None:
        return policy
    from aegir.models.policy import BytePolicy

    return BytePolicy(module.model)


def is_classifier(module: Any) -> bool:
    return hasattr(module, "head") and hasattr(module, "features") and hasattr(module, "labels")


def hook_points(model: nn.Module) -> tuple[nn.Module | None, str, nn.Module | None, str]:
    """(middle block, its name, final norm, its name). Blocks are the entries of the model's `layers` / `blocks`
    lists that run at full sequence length (an H-Net's inner stages are skipped); the middle one is block
    (n - 1) // 2. The final norm is `ln_out` (byte LMs) or the `norm` / `ln_f` beside the layer list (HF)."""
    blocks: list[tuple[str, nn.Module]] = []
    parents: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in _LAYER_LISTS and ".inner." not in name:
            blocks.extend((f"{name}.{i}", m) for i, m in enumerate(module))
            parents.append(name.rpartition(".")[0])
    middle_name, middle = blocks[(len(blocks) - 1) // 2] if blocks else ("", None)
    named = dict(model.named_modules())
    for candidate in ["ln_out", *[f"{p}.{n}" if p else n for p in parents[:1] for n in _FINAL_NORMS]]:
        if candidate in named:
            return middle, middle_name, named[candidate], candidate
    for name, module in reversed(list(named.items())):
        if name.rsplit(".", 1)[-1] in _FINAL_NORMS:
            return middle, middle_name, module, name
    last_name, last = blocks[-1] if blocks else ("", None)
    return middle, middle_name, last, last_name


class _Capture:
    """Forward hooks keeping the output (first element of a tuple) of the given modules."""

    def __init__(self, modules: Mapping[str, nn.Module | None]) -> None:
        self.outputs: dict[str, Tensor] = {}
        self.handles = []
        for key, module in modules.items():
            if module is not None:
                self.handles.append(module.register_forward_hook(self._hook(key)))

    def _hook(self, key: str) -> Any:
        def keep(module: nn.Module, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, Tensor) and out.dim() == 3:
                self.outputs[key] = out.detach()
        return keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _pool(hidden: Tensor | None, lengths: Tensor, fallback: Tensor) -> Tensor:
    if hidden is None:
        return fallback
    if hidden.shape[1] != int(lengths.max()) and hidden.shape[1] < int(lengths.max()):
        return hidden.float().mean(1)  # a chunked stage: positions do not map to bytes
    return mean_pool(hidden.float(), lengths.clamp_max(hidden.shape[1]))


def _encode_lm_probe(policy: Any, probe: Mapping[str, Any], answer_tokens: int) -> tuple[list[int], int]:
    """(ids, first scored target index). Text probes score every next-token prediction (targets 1..L-1) and their
    last `answer_tokens` tokens are the answer; record probes score the answer tokens after the prompt."""
    if "ids" in probe:  # a pretraining window with special tokens (serialized tables), scored like text
        return [int(t) for t in probe["ids"]], 1
    if "text" in probe:
        ids = policy.encode_completion(str(probe["text"]))[:-1]  # the text's tokens, without the end of turn
        return ids, 1
    prompt = policy.encode_prompt(probe["prompt"])
    answer = policy.encode_completion(str(probe["answer"])) if probe.get("answer") is not None else []
    return prompt + answer, len(prompt)


@torch.no_grad()
def read_lm(module: Any, probes: Sequence[Mapping[str, Any]], *, batch_size: int, answer_tokens: int) -> Readout:
    """The read-out of a language-model loop (pretraining, SFT, GRPO) of either family."""
    policy = policy_of(module)
    model = policy.model
    middle, middle_name, final, final_name = hook_points(model)
    device = next(model.parameters()).device
    allowed = policy.allowed() if getattr(policy, "allowed_ids", None) is not None else None
    encoded = [_encode_lm_probe(policy, p, answer_tokens) for p in probes]
    was_training = model.training
    model.eval()
    capture = _Capture({"middle": middle, "last": final})
    lasts, middles = [], []
    conf, correct, ent, pos, which = [], [], [], [], []
    answer_logprobs: dict[str, list[float]] = {}
    divergence: dict[str, int | None] = {}
    n_outcomes = None
    try:
        for start in range(0, len(probes), batch_size):
            chunk = encoded[start: start + batch_size]
            lengths = torch.tensor([max(len(ids), 1) for ids, _ in chunk])
            width = int(lengths.max())
            ids = torch.full((len(chunk), width), int(policy.pad_id), dtype=torch.long)
            for row, (seq, _) in enumerate(chunk):
                ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            ids = ids.to(device)
            attention = (torch.arange(width, device=device)[None, :] < lengths.to(device)[:, None]).long()
            capture.outputs.clear()
            logits = policy.sequence_logits(ids, attention).float()
            if allowed is not None:
                logits = logits.masked_fill(~allowed.to(logits.device), -math.inf)
            n_outcomes = int(allowed.sum()) if allowed is not None else logits.shape[-1]
            fallback = logits.new_zeros(len(chunk), 1)
            lasts.append(_pool(capture.outputs.get("last"), lengths, fallback).cpu())
            middles.append(_pool(capture.outputs.get("middle"), lengths, fallback).cpu())
            logp = torch.log_softmax(logits, dim=-1)
            top_logp, top = logp.max(-1)
            entropy = entropy_from_logits(logits)
            for row, (seq, first) in enumerate(chunk):
                index = start + row
                probe = probes[index]
                targets = torch.tensor(seq[first:], dtype=torch.long, device=device)
                if targets.numel() == 0:
                    continue
                span = torch.arange(first - 1, len(seq) - 1, device=device)
                conf.append(top_logp[row, span].exp().cpu())
                hit = (top[row, span] == targets).float().cpu()
                correct.append(hit)
                ent.append(entropy[row, span].cpu())
                pos.append(torch.arange(targets.numel()))
                which.append(torch.full((targets.numel(),), index))
                target_logp = logp[row, span, targets].cpu()
                if "text" in probe:
                    k = min(answer_tokens, targets.numel())
                    answer_lp, answer_hit = target_logp[-k:], hit[-k:]
                    predicted, expected = top[row, span][-k:].tolist(), targets[-k:].tolist()
                elif probe.get("answer") is not None:
                    answer_lp, answer_hit = target_logp, hit
                    predicted, expected = top[row, span].tolist(), targets.tolist()
                else:
                    continue
                del answer_hit
                answer_logprobs[str(probe["id"])] = [round(float(v), 5) for v in answer_lp]
                divergence[str(probe["id"])] = first_divergence(predicted, expected)
    finally:
        capture.close()
        model.train(was_training)
    cat = (lambda parts: torch.cat(parts).numpy() if parts else np.zeros(0))
    return Readout(torch.cat(lasts).numpy(), torch.cat(middles).numpy(), {"last": final_name, "middle": middle_name},
                   cat(conf), cat(correct), cat(ent), cat(pos), cat(which),
                   math.log(n_outcomes) if n_outcomes else math.nan, answer_logprobs, divergence)


@torch.no_grad()
def read_classifier(module: Any, probes: Sequence[Mapping[str, Any]], *, batch_size: int) -> Readout:
    """The read-out of the column classifier: middle block and pooled features, softmax over the labels."""
    from aegir.models.features import move_cls_to_end, pad_batch
    from aegir.tokenizer import ByteTokenizer

    tokenizer = ByteTokenizer()
    model = module.model
    middle, middle_name, _, _ = hook_points(model)
    label_index = {label: i for i, label in enumerate(module.labels)}
    was_training = module.training
    module.eval()
    capture = _Capture({"middle": middle})
    lasts, middles, conf, correct, ent, which = [], [], [], [], [], []
    try:
        for start in range(0, len(probes), batch_size):
            chunk = probes[start: start + batch_size]
            rows = [list(p["ids"]) if "ids" in p else tokenizer.encode(str(p.get("text", p.get("prompt", ""))))
                    for p in chunk]
            ids, lengths = pad_batch(rows)
            if module.pooling == "cls_last":
                ids, lengths = move_cls_to_end(ids, lengths)
            device = module.device
            ids, lengths = ids.to(device), lengths.to(device)
            capture.outputs.clear()
            feats = module.features(ids, lengths).float()
            logits = module.head(feats).float()
            lasts.append(feats.cpu())
            middles.append(_pool(capture.outputs.get("middle"), lengths.cpu(), feats.cpu()).cpu())
            probs = torch.softmax(logits, -1)
            top_p, top = probs.max(-1)
            entropy = entropy_from_logits(logits)
            for row, probe in enumerate(chunk):
                target = label_index.get(str(probe.get("label")))
                if target is None:
                    continue
                conf.append(float(top_p[row]))
                correct.append(float(int(top[row]) == target))
                ent.append(float(entropy[row]))
                which.append(start + row)
    finally:
        capture.close()
        module.train(was_training)
    return Readout(torch.cat(lasts).numpy(), torch.cat(middles).numpy(), {"last": "pooled features",
                                                                           "middle": middle_name},
                   np.array(conf), np.array(correct), np.array(ent), np.zeros(len(conf), dtype=int),
                   np.array(which, dtype=int), math.log(max(len(module.labels), 1)))


def read_probes(module: Any, probes: Sequence[Mapping[str, Any]], *, batch_size: int, answer_tokens: int
                ) -> Readout:
    if is_classifier(module):
        return read_classifier(module, probes, batch_size=batch_size)
    return read_lm(module, probes, batch_size=batch_size, answer_tokens=answer_tokens)


def tracked_parameters(module: Any) -> dict[str, Tensor]:
    """The weights whose learning history is recorded, by name inside the trained network: the policy's model for
    SFT / GRPO (never the frozen KL reference; only the trainable adapter of a LoRA policy), the byte LM for
    pretraining, backbone (`model.`) + head for classification."""
    policy = getattr(module, "lm", None)
    if policy is not None:
        adapter_only = bool(getattr(policy, "adapter_only", False))
        return {n: p for n, p in policy.model.named_parameters() if p.requires_grad or not adapter_only}
    if is_classifier(module):
        return dict(module.named_parameters())
    return dict(module.model.named_parameters())

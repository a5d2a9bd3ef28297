"""The hard-example board: canonical hard prompts with expected answers, judged at every checkpoint.

A board is a YAML file `{examples: [{id, category, prompt, expected, match?, format?, record?}]}` (one per task
ships in aegir/observe/boards/). Language-model loops decode greedily (`hard_examples.max_new_tokens`); the
classifier predicts a label for the prompt read as a serialized column. Each example gets ✓ or ✗ and, when wrong,
an error type:

- `truncated`: the completion hit the token limit without ending its turn (never for `match: prefix`);
- `format error`: the completion does not match the example's `format` regex, or `match: number` finds no number;
- `reward error`: the example has a `record` (the task's record fields) and the loop's reward raised on it;
- `wrong answer` (`wrong label` for the classifier): everything else.

`match`: `exact` (default; surrounding whitespace ignored), `prefix` (the completion starts with `expected`: text
continuations), `contains`, or `number` (the first number in the completion, read in Brazilian or English notation:
"1.234,56" and "1,234.56" are both 1234.56, equals `expected`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from aegir.observe.readout import is_classifier, policy_of

_NUMBER = re.compile(r"-?\d[\d.,]*")


def parse_number(text: str) -> float | None:
    """The first number in `text`, in PT-BR ("1.234,56") or English ("1,234.56") notation; None if there is none.
    A lone separator followed by exactly three digits is a thousands separator ("1.234" -> 1234)."""
    match = _NUMBER.search(text)
    if not match:
        return None
    token = match.group(0).rstrip(".,")
    negative = token.startswith("-")
    token = token.lstrip("-")
    if "," in token and "." in token:
        decimal: str | None = "," if token.rfind(",") > token.rfind(".") else "."
    elif "," in token or "." in token:
        sep = "," if "," in token else "."
        head, tail = token.rsplit(sep, 1)
        thousands = token.count(sep) > 1 or (len(tail) == 3 and head not in ("", "0"))
        decimal = None if thousands else sep
    else:
        decimal = None
    cleaned = "".join(ch for ch in token if ch.isdigit() or ch == decimal)
    if decimal:
        cleaned = cleaned.replace(decimal, ".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return -value if negative else value


def judge_text(item: Mapping[str, Any], completion: str, truncated: bool) -> tuple[bool, str | None]:
    """(ok, error type) of one completion against a board example (see the module docstring)."""
    expected, mode = str(item["expected"]), str(item.get("match", "exact"))
    text = completion.strip()
    if mode == "prefix":
        ok = completion.startswith(expected)
    elif mode == "contains":
        ok = expected in completion
    elif mode == "number":
        value, target = parse_number(text), parse_number(expected)
        if value is None:
            return False, "truncated" if truncated else "format error"
        ok = target is not None and math.isclose(value, target, rel_tol=1e-9, abs_tol=1e-6)
    else:
        ok = text == expected.strip()
    if ok:
        return True, None
    if truncated and mode != "prefix":
        return False, "truncated"
    if item.get("format") and not re.search(str(item["format"]), text):
        return False, "format error"
    return False, "wrong answer"


@torch.no_grad()
def judge_board(module: Any, board: Sequence[Mapping[str, Any]], max_new_tokens: int) -> list[dict[str, Any]]:
    """[{ok, error, completion}] for every board example, with the module's current weights."""
    if is_classifier(module):
        return _judge_classifier(module, board)
    policy = policy_of(module)
    model = policy.model
    was_training = model.training
    model.eval()
    try:
        prompts = [policy.encode_prompt(item["prompt"]) for item in board]
        generator = torch.Generator().manual_seed(0)
        batch = policy.sample(prompts, 1, max_new_tokens, temperature=0.0, top_p=1.0, generator=generator)
        texts = [policy.decode(row[: int(n)].tolist()) for row, n in zip(batch.completion_ids, batch.lengths)]
    finally:
        model.train(was_training)
    results = []
    composer = getattr(module, "composer", None) if hasattr(module, "reward_spec") else None
    for index, (item, text) in enumerate(zip(board, texts)):
        ok, error = judge_text(item, policy.reward_text(text), bool(batch.truncated[index]))
        if not ok and composer is not None and isinstance(item.get("record"), Mapping):
            record = {"prompt": item["prompt"], **dict(item["record"])}
            scored = composer.score([record], [policy.reward_text(text)])
            if scored.errors:
                error = "reward error"
        results.append({"ok": ok, "error": error, "completion": text})
    return results


@torch.no_grad()
def _judge_classifier(module: Any, board: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from aegir.models.features import pad_batch
    from aegir.tokenizer import CLS_ID, SEP_ID, ByteTokenizer

    tokenizer = ByteTokenizer()
    rows = [[CLS_ID, *tokenizer.encode(_as_text(item["prompt"])), SEP_ID] for item in board]
    ids, lengths = pad_batch(rows)
    was_training = module.training
    module.eval()
    try:
        logits = module(ids.to(module.device), lengths.to(module.device))
    finally:
        module.train(was_training)
    out = []
    for item, index in zip(board, logits.argmax(-1).tolist()):
        label = module.labels[index]
        ok = label == str(item["expected"])
        out.append({"ok": ok, "error": None if ok else "wrong label", "completion": label})
    return out


def _as_text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(str(m["content"]) for m in prompt)

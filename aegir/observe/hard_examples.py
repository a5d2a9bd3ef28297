"""The hard-example board: canonical hard prompts with expected answers, judged at every checkpoint.

A board is a YAML file `{max_new_tokens?, examples: [{id, category, prompt | columns, expected, match?, format?,
record?}]}` (one per task ships in aegir/observe/boards/). Language-model loops decode each `prompt` greedily
(`hard_examples.max_new_tokens`, or the board's own `max_new_tokens` when it asks for more). The column classifier
(CTA / CPA) reads each example's `columns` -- `{target: [values], main: [values] (CPA), context: [[values], ...]}` --
serialized exactly as the task serializes its data (aegir/tasks/tables/serialize.py, the run's byte budgets), and
predicts a label; `expected` must be one of the task's labels. Each example gets ✓ or ✗ and, when wrong, an error
type:

- `truncated`: the completion hit the token limit without ending its turn (never for `match: prefix`);
- `format error`: the completion does not match the example's `format` regex, `match: number` finds no number, or
  `match: composition` fails the verifier's structural gate;
- `reward error`: the example has a `record` (the task's record fields) and the loop's reward raised on it;
- `wrong answer` (`wrong label` for the classifier): everything else.

`match`: `exact` (default; surrounding whitespace ignored), `prefix` (the completion starts with `expected`: text
continuations), `contains`, `number` (the first number in the completion, read in Brazilian or English notation:
"1.234,56" and "1,234.56" are both 1234.56, equals `expected`), or `composition` (task=ontology: the completion is
an ontology composition that the task's verifier gives full marks, R = 1, on the example's `record.footprint`; any
equivalent composition passes, `expected` is the reference one).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from aegir.errors import InputError
from aegir.observe.readout import is_classifier, policy_of

log = logging.getLogger("aegir")

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
    elif mode == "composition":
        found = _verdict(item, text)
        if found is None or found.structural <= 0.0:
            return False, "truncated" if truncated else "format error"
        ok = found.total >= 1.0 - 1e-9
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
        answer = policy.reward_text(text)
        ok, error = judge_text(item, answer, bool(batch.truncated[index]))
        if not ok and composer is not None and isinstance(item.get("record"), Mapping):
            record = {"prompt": item["prompt"], **dict(item["record"])}
            scored = composer.score([record], [answer])
            if scored.errors:
                error = "reward error"
        score = composition_score(item, answer) if item.get("match") == "composition" else None
        results.append({"ok": ok, "error": error, "completion": text, "score": score})
    return results


@torch.no_grad()
def _judge_classifier(module: Any, board: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The classifier's label for every example's serialized `ids` (see `column_board`), with the probability it
    gives the expected label as `score`."""
    from aegir.loops.classify import encode_examples
    from aegir.tasks.tables.dataset import ColumnExample

    index = {label: i for i, label in enumerate(module.labels)}
    examples = [ColumnExample(list(item["ids"]), index[str(item["expected"])], "board", 0) for item in board]
    ids, lengths, targets = encode_examples(examples, module.pooling)
    was_training = module.training
    module.eval()
    try:
        probs = torch.softmax(module(ids.to(module.device), lengths.to(module.device)).float(), -1).cpu()
    finally:
        module.train(was_training)
    out = []
    for item, row, target in zip(board, probs, targets.tolist()):
        label = module.labels[int(row.argmax())]
        ok = label == str(item["expected"])
        out.append({"ok": ok, "error": None if ok else "wrong label", "completion": label,
                    "score": round(float(row[target]), 6)})
    return out


def column_board(board: Sequence[Mapping[str, Any]], budget: Any, labels: Sequence[str], path: Any,
                 shipped: bool) -> list[dict[str, Any]]:
    """The board of a column classifier (its shape checked by `aegir.observe.probes.check_board_task`), each example
    with the token `ids` of its `columns` serialized under the run's budgets (`budget`: a SerializeBudget), in the
    task's own format: the target column, the main column (CPA), the context columns. An example whose `expected`
    is not one of the run's labels is an InputError naming it in a user's board, and is left out with a warning in
    a shipped one (a SOTAB label vocabulary may lack some of the generator's labels)."""
    from aegir.tasks.tables.serialize import serialize_column
    from aegir.tasks.tables.table import Table

    known = set(labels)
    out: list[dict[str, Any]] = []
    skipped: list[str] = []
    for item in board:
        where = f"hard-example board {path}, example '{item['id']}'"
        columns = item["columns"]
        if str(item["expected"]) not in known:
            if not shipped:
                raise InputError(f"{where}: expected label '{item['expected']}' is not one of the task's "
                                 f"{len(labels)} labels")
            skipped.append(str(item["id"]))
            continue
        cells = [columns["target"], *([columns["main"]] if "main" in columns else []), *columns.get("context", [])]
        table = Table(f"board/{item['id']}", tuple(tuple(str(v) for v in column) for column in cells))
        main = 1 if "main" in columns else None
        context = list(range(2 if main else 1, len(cells)))
        out.append({**item, "ids": serialize_column(table, 0, context, budget, main).ids})
    if skipped:
        log.warning("observatory: %d example(s) of %s expect labels this run does not have, left out: %s",
                    len(skipped), path, ", ".join(skipped))
    return out


def composition_score(item: Mapping[str, Any], completion: str) -> float | None:
    """The ontology verifier's total reward of `completion` on the example's `record` (its footprint and, when
    given, its catalog); None without a footprint."""
    found = _verdict(item, completion)
    return None if found is None else round(float(found.total), 6)


def _verdict(item: Mapping[str, Any], completion: str) -> Any:
    from aegir.tasks.ontology.rewards import verdict

    return verdict(dict(item.get("record") or {}), completion)

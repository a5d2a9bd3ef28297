"""`toy_arith`: a tiny verifiable task on which a ~1M-parameter byte-level policy learns from random init on CPU.

Prompts are ``"12+7="``; the completion should be the decimal answer (``"19"``) followed by EOS. Why this task:

* The answer is a handful of tokens and the GRPO loop masks every logit outside :data:`TOY_ALLOWED_TOKEN_IDS`
  (digits, ``-``, EOS), so a *random* policy already samples well-formed numbers often (first token a digit with
  p = 10/12, then EOS with p = 1/12 per step) and a group of 8 completions almost always has reward variance.
* Rewards are dense and graded: :func:`toy_format` (is it a clean number?), :func:`toy_partial` (how close is it?)
  and :func:`toy_exact` (is it right?). A run first learns the format, then the answer's magnitude, then sums.
* Difficulty is two knobs, ``max_operand`` (operands are drawn from ``0..max_operand``) and ``ops`` (``+``, ``-``,
  ``*``); ``max_operand=9, ops="+"`` is the easiest level (100 problems, answers 0..18).

What the verifiers accept, precisely. The *number* in a completion is its text with ASCII whitespace
(``" \\t\\r\\n"``) stripped at both ends, which must be a canonical decimal integer of at most
:data:`MAX_ANSWER_DIGITS` digits: an optional ``-``, then ``0`` or a non-zero ASCII digit followed by ASCII digits;
no leading zeros, no ``-0``, no ``+``, no Unicode digits (``int()`` would accept ``"٣"``; we do not). Anything else
does not parse. The length cap makes long digit strings worthless (no reward hacking by spamming digits) and keeps
parsing O(1) on hostile, megabyte-long completions.

The verifiers see text only: the loop decodes the completion up to (not including) EOS with ``skip_special=True``.
A completion cut off by the length limit is scored on its text, so give the loop room for the answer plus EOS
(``MAX_ANSWER_DIGITS + 2`` tokens is always enough) or mask truncated completions there.

Each verifier returns None for a record of another task (multi-task runs), and raises on a malformed
``toy_arith`` record (a data bug the reward composer reports as an error).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aegir.errors import InputError
from aegir.rl.rewards import register_reward
from aegir.tokenizer import EOS_ID

TOY_TASK = "toy_arith"
TOY_OPS = "+-*"
MAX_ANSWER_DIGITS = 6
"""The longest answer a verifier accepts, in digits; `max_operand`/`ops` must keep every answer within it."""
PARTIAL_MIN_SCALE = 10
"""`toy_partial` gives credit within max(PARTIAL_MIN_SCALE, |answer|) of the answer (relative error, with a floor
so small answers still reward near misses)."""

TOY_ALLOWED_TOKEN_IDS: tuple[int, ...] = tuple(sorted([*b"0123456789-", EOS_ID]))
"""Token ids the policy may sample on this task (ASCII digits, '-', EOS); the GRPO loop masks all other logits."""

_WHITESPACE = " \t\r\n"
_CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]{0,%d})" % (MAX_ANSWER_DIGITS - 1), re.ASCII)
# A number at the start of the text, not followed by another digit (bounded, so O(1) on huge digit strings).
_LEADING = re.compile(r"-?[0-9]{1,%d}(?![0-9])" % MAX_ANSWER_DIGITS, re.ASCII)


def toy_allowed_token_ids(ops: str | None = None) -> list[int]:
    """Allowed ids for a task using `ops` (None = any op): '-' only when answers can be negative, so `+`/`*`-only
    runs explore 11 tokens instead of 12."""
    if ops is None or "-" in ops:
        return list(TOY_ALLOWED_TOKEN_IDS)
    return [token for token in TOY_ALLOWED_TOKEN_IDS if token != ord("-")]


# ----------------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------------


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def _check_args(max_operand: Any, ops: Any, **counts: Any) -> None:
    """Reject bad task settings as user errors naming the setting."""
    if isinstance(max_operand, bool) or not isinstance(max_operand, int) or max_operand < 0:
        raise InputError(f"config error: task.max_operand: expected an integer >= 0, got {max_operand!r}")
    if not isinstance(ops, str) or not ops or any(op not in TOY_OPS for op in ops) or len(set(ops)) != len(ops):
        raise InputError(f"config error: task.ops: expected distinct operators from '{TOY_OPS}', got {ops!r}")
    largest = max(abs(_apply(max_operand, op, max_operand)) for op in ops)
    if len(str(largest)) > MAX_ANSWER_DIGITS:
        raise InputError(f"config error: task.max_operand: {max_operand} with ops '{ops}' gives answers up to "
                         f"{largest}, longer than the {MAX_ANSWER_DIGITS} digits the verifiers accept")
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"config error: task.{key}: expected an integer >= 0, got {value!r}")


def _n_problems(max_operand: int, ops: str) -> int:
    return len(ops) * (max_operand + 1) ** 2


def _problem(index: int, max_operand: int, ops: str) -> tuple[int, str, int]:
    """Problem number `index` of the enumerable space (op, a, b), so sampling needs no materialised list."""
    side = max_operand + 1
    op_index, rest = divmod(index, side * side)
    a, b = divmod(rest, side)
    return a, ops[op_index], b


def make_toy_record(record_id: str, a: int, op: str, b: int) -> dict[str, Any]:
    """A `toy_arith` record: id, task, prompt like "12+7=", integer answer."""
    return {"id": record_id, "task": TOY_TASK, "prompt": f"{a}{op}{b}=", "answer": _apply(a, op, b)}


def generate_toy_records(data_seed: int, n: int, max_operand: int = 9, ops: str = "+") -> list[dict[str, Any]]:
    """`n` independent problems (with repetition), the same for the same arguments on any machine.

    `random.Random` with a string seed is hashed with SHA-512, so the stream does not depend on PYTHONHASHSEED.
    """
    _check_args(max_operand, ops, n=n)
    rng = random.Random(f"{TOY_TASK}/{data_seed}/records")
    space = _n_problems(max_operand, ops)
    return [make_toy_record(f"{TOY_TASK}/{data_seed}/{i}", *_problem(rng.randrange(space), max_operand, ops))
            for i in range(n)]


@dataclass
class ToySplits:
    """Train and eval records; `disjoint` says whether no eval problem appears in train."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    disjoint: bool
    n_problems: int
    provenance: dict[str, Any] = field(default_factory=dict)


def toy_splits(data_seed: int, n_train: int, n_eval: int, max_operand: int = 9, ops: str = "+") -> ToySplits:
    """A fixed eval set of distinct problems and a train set drawn (with repetition) from the *other* problems.

    Held-out problems make eval accuracy measure arithmetic rather than memorisation. When the eval set needs the
    whole problem space (e.g. 100 eval problems for 0..9 '+'), eval is every problem once (fewer than `n_eval` if
    the space is smaller) and train draws from all problems, with ``disjoint=False``.
    """
    _check_args(max_operand, ops, n_train=n_train, n_eval=n_eval)
    space = _n_problems(max_operand, ops)
    eval_rng = random.Random(f"{TOY_TASK}/{data_seed}/eval")
    train_rng = random.Random(f"{TOY_TASK}/{data_seed}/train")
    eval_indices = eval_rng.sample(range(space), min(n_eval, space))
    held_out = set(eval_indices)
    disjoint = len(held_out) < space
    if not disjoint:
        train_indices = [train_rng.randrange(space) for _ in range(n_train)]
    elif 2 * len(held_out) <= space:  # rejection sampling: at most 2 draws per record on average
        train_indices = []
        while len(train_indices) < n_train:
            index = train_rng.randrange(space)
            if index not in held_out:
                train_indices.append(index)
    else:  # few problems left: list them (fewer than len(held_out), so this is small)
        remaining = [index for index in range(space) if index not in held_out]
        train_indices = [train_rng.choice(remaining) for _ in range(n_train)]
    train = [make_toy_record(f"{TOY_TASK}/train/{i}", *_problem(index, max_operand, ops))
             for i, index in enumerate(train_indices)]
    evaluation = [make_toy_record(f"{TOY_TASK}/eval/{i}", *_problem(index, max_operand, ops))
                  for i, index in enumerate(eval_indices)]
    provenance = {"task": TOY_TASK, "data_seed": data_seed, "max_operand": max_operand, "ops": ops,
                  "n_train": len(train), "n_eval": len(evaluation), "n_problems": space, "disjoint": disjoint}
    return ToySplits(train=train, eval=evaluation, disjoint=disjoint, n_problems=space, provenance=provenance)


# ----------------------------------------------------------------------------------------------------------------
# Verifiers
# ----------------------------------------------------------------------------------------------------------------


def parse_toy_answer(completion: str) -> int | None:
    """The integer a completion states (see the module docstring for the exact rule), or None."""
    text = completion.strip(_WHITESPACE)
    if len(text) > MAX_ANSWER_DIGITS + 1 or not _CANONICAL.fullmatch(text) or text == "-0":
        return None
    return int(text)


def _expected_answer(record: Mapping[str, Any]) -> int | None:
    """The record's answer, None for another task's record; a malformed toy record raises (a data bug)."""
    if record.get("task") != TOY_TASK:
        return None
    answer = record["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise ValueError(f"toy_arith record {record.get('id')!r}: answer must be an int, got {answer!r}")
    return answer


@register_reward("toy_exact")
def toy_exact(record: Mapping[str, Any], completion: str) -> float | None:
    """1.0 when the completion's number equals the answer, else 0.0."""
    answer = _expected_answer(record)
    if answer is None:
        return None
    return 1.0 if parse_toy_answer(completion) == answer else 0.0


@register_reward("toy_partial")
def toy_partial(record: Mapping[str, Any], completion: str) -> float | None:
    """Dense credit for near misses: 1 − |pred − answer| / max(10, |answer|), floored at 0; 0 if it does not parse.

    Only a clean number earns anything, so junk around a close guess is not rewarded.
    """
    answer = _expected_answer(record)
    if answer is None:
        return None
    predicted = parse_toy_answer(completion)
    if predicted is None:
        return 0.0
    scale = max(PARTIAL_MIN_SCALE, abs(answer))
    return max(0.0, 1.0 - abs(predicted - answer) / scale)


@register_reward("toy_format")
def toy_format(record: Mapping[str, Any], completion: str) -> float | None:
    """Is the completion a clean answer? Strict on the raw text (no whitespace), independent of correctness.

    1.0: the whole completion is a canonical number of at most MAX_ANSWER_DIGITS digits ("19", "-3", "0").
    0.5: it starts with such a number but more text follows ("19-", "19 is it"): the answer is there, EOS is not.
    0.0: anything else (empty, "-", "007", more than MAX_ANSWER_DIGITS digits, text first).
    """
    if record.get("task") != TOY_TASK:
        return None
    match = _LEADING.match(completion)
    if match is None:
        return 0.0
    number = match.group()
    if not _CANONICAL.fullmatch(number) or number == "-0":
        return 0.0
    return 1.0 if match.end() == len(completion) else 0.5

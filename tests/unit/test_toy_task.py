"""The toy_arith task: deterministic data, held-out eval, verifier rules, and rewards a random policy can climb."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegir.errors import InputError
from aegir.rl.rewards import get_reward
from aegir.tasks.toy import (
    MAX_ANSWER_DIGITS,
    TOY_ALLOWED_TOKEN_IDS,
    generate_toy_records,
    parse_toy_answer,
    toy_allowed_token_ids,
    toy_exact,
    toy_format,
    toy_partial,
    toy_splits,
)
from aegir.tokenizer import EOS_ID, ByteTokenizer


def rec(answer: int) -> dict:
    return {"id": "t", "task": "toy_arith", "prompt": "?", "answer": answer}


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def test_records_are_deterministic_by_seed_and_correct() -> None:
    a = generate_toy_records(3, 200, max_operand=12, ops="+-*")
    assert a == generate_toy_records(3, 200, max_operand=12, ops="+-*")
    assert a != generate_toy_records(4, 200, max_operand=12, ops="+-*")
    assert len({r["id"] for r in a}) == 200
    for r in a:
        expression = r["prompt"]
        assert expression.endswith("=") and r["task"] == "toy_arith"
        left, op, right = next((expression[:i], c, expression[i + 1:-1]) for i, c in enumerate(expression) if c in "+-*")
        assert 0 <= int(left) <= 12 and 0 <= int(right) <= 12
        assert eval(expression[:-1]) == r["answer"]  # noqa: S307 - our own digits-and-operator strings
    assert {r["prompt"][1:2] for r in a if len(r["prompt"]) == 4} <= set("+-*")
    assert any(r["answer"] < 0 for r in a)


def test_splits_are_deterministic_and_eval_held_out() -> None:
    splits = toy_splits(7, n_train=500, n_eval=30)
    again = toy_splits(7, n_train=500, n_eval=30)
    assert (splits.train, splits.eval) == (again.train, again.eval)
    eval_prompts = [r["prompt"] for r in splits.eval]
    assert len(eval_prompts) == 30 == len(set(eval_prompts))
    assert splits.disjoint and not set(eval_prompts) & {r["prompt"] for r in splits.train}
    assert len({r["id"] for r in splits.train + splits.eval}) == 530
    assert splits.provenance["n_problems"] == 100 == splits.n_problems


def test_splits_disjoint_even_when_few_problems_remain() -> None:
    splits = toy_splits(0, n_train=50, n_eval=3, max_operand=1, ops="+")  # 4 problems, 1 left for train
    assert splits.disjoint and len({r["prompt"] for r in splits.train}) == 1
    assert not {r["prompt"] for r in splits.train} & {r["prompt"] for r in splits.eval}


def test_splits_fall_back_when_eval_needs_every_problem() -> None:
    splits = toy_splits(0, n_train=10, n_eval=10, max_operand=1, ops="+")
    assert not splits.disjoint and len(splits.eval) == 4 and len(splits.train) == 10


def test_large_problem_space_is_sampled_without_enumeration() -> None:
    splits = toy_splits(1, n_train=100, n_eval=100, max_operand=999, ops="+-*")
    assert splits.n_problems == 3 * 1000 ** 2 and splits.disjoint


@pytest.mark.parametrize("kwargs, key", [
    ({"max_operand": -1}, "task.max_operand"),
    ({"max_operand": 2.5}, "task.max_operand"),
    ({"ops": "/"}, "task.ops"),
    ({"ops": "++"}, "task.ops"),
    ({"ops": ""}, "task.ops"),
    ({"max_operand": 10_000, "ops": "*"}, "longer than the 6 digits"),
    ({"n": -5}, "task.n"),
])
def test_bad_settings_are_input_errors(kwargs: dict, key: str) -> None:
    args = {"data_seed": 0, "n": 4, "max_operand": 9, "ops": "+", **kwargs}
    with pytest.raises(InputError, match=key):
        generate_toy_records(**args)


# ---------------------------------------------------------------------------------------------------------------
# Allowed tokens
# ---------------------------------------------------------------------------------------------------------------


def test_allowed_token_ids() -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.decode(TOY_ALLOWED_TOKEN_IDS) == "-0123456789"  # EOS is dropped by decode
    assert toy_allowed_token_ids() == sorted(TOY_ALLOWED_TOKEN_IDS) and EOS_ID in toy_allowed_token_ids()
    assert toy_allowed_token_ids("+*") == [*range(ord("0"), ord("9") + 1), EOS_ID]
    assert toy_allowed_token_ids("+-") == list(TOY_ALLOWED_TOKEN_IDS)


# ---------------------------------------------------------------------------------------------------------------
# Verifiers
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion, answer, exact, partial", [
    ("7", 7, 1.0, 1.0),
    (" 7\n", 7, 1.0, 1.0),           # surrounding ASCII whitespace is stripped
    ("9", 7, 0.0, 0.8),              # 1 - 2/10
    ("-5", 7, 0.0, 0.0),             # 12 away: floored at 0
    ("40", 50, 0.0, 0.8),            # 1 - 10/50: relative to the answer's size
    ("-3", -3, 1.0, 1.0),
    ("0", 0, 1.0, 1.0),
    ("-0", 0, 0.0, 0.0),             # not canonical
    ("07", 7, 0.0, 0.0),             # leading zero
    ("+7", 7, 0.0, 0.0),
    ("7-", 7, 0.0, 0.0),             # trailing junk
    ("7 7", 7, 0.0, 0.0),
    ("", 7, 0.0, 0.0),
    ("-", 7, 0.0, 0.0),
    ("٧", 7, 0.0, 0.0),              # Arabic-Indic seven: int() would accept it
    ("７", 7, 0.0, 0.0),             # fullwidth seven
    ("7\x00", 7, 0.0, 0.0),
    ("1234567", 1234567, 0.0, 0.0),  # longer than MAX_ANSWER_DIGITS: never parses
    ("7" * 1_000_000, 7, 0.0, 0.0),
])
def test_exact_and_partial_by_hand(completion: str, answer: int, exact: float, partial: float) -> None:
    assert toy_exact(rec(answer), completion) == exact
    assert toy_partial(rec(answer), completion) == pytest.approx(partial)


@pytest.mark.parametrize("completion, score", [
    ("12", 1.0), ("-3", 1.0), ("0", 1.0), ("999999", 1.0),
    ("12-", 0.5), ("12-3", 0.5), ("12 is it", 0.5), ("12\x00", 0.5), ("5\ufffd", 0.5),
    ("", 0.0), ("-", 0.0), ("--1", 0.0), ("0012", 0.0), ("-0", 0.0), (" 12", 0.0), ("12\n", 0.5),
    ("1234567", 0.0), ("9" * 100_000, 0.0), ("abc", 0.0), ("<|eos|>", 0.0), ("٣", 0.0),
])
def test_format_by_hand(completion: str, score: float) -> None:
    assert toy_format(rec(1), completion) == score


def test_other_tasks_records_are_not_applicable() -> None:
    other = {"id": "x", "task": "other", "prompt": "hi", "answer": 3}
    assert toy_exact(other, "3") is None and toy_partial(other, "3") is None and toy_format(other, "3") is None
    assert toy_exact({}, "3") is None


def test_malformed_toy_record_raises_for_the_composer_to_report() -> None:
    with pytest.raises(KeyError):
        toy_exact({"task": "toy_arith"}, "3")
    with pytest.raises(ValueError, match="answer must be an int"):
        toy_partial({"task": "toy_arith", "answer": "3"}, "3")


def test_verifiers_are_registered() -> None:
    assert get_reward("toy_exact") is toy_exact
    assert get_reward("toy_partial") is toy_partial
    assert get_reward("toy_format") is toy_format


@settings(max_examples=300, deadline=None)
@given(completion=st.text(alphabet=st.characters(), max_size=40)
       | st.text(alphabet="0123456789- \n\x00", max_size=12),
       answer=st.integers(min_value=-999_999, max_value=999_999))
def test_verifiers_never_raise_and_stay_in_unit_interval(completion: str, answer: int) -> None:
    for verifier in (toy_exact, toy_partial, toy_format):
        value = verifier(rec(answer), completion)
        assert value is not None and 0.0 <= value <= 1.0
    parsed = parse_toy_answer(completion)
    assert (toy_exact(rec(answer), completion) == 1.0) == (parsed == answer)
    if parsed is not None:
        assert str(parsed) == completion.strip(" \t\r\n") and len(str(abs(parsed))) <= MAX_ANSWER_DIGITS


@settings(max_examples=200, deadline=None)
@given(answer=st.integers(min_value=-999_999, max_value=999_999))
def test_right_answer_scores_full_marks(answer: int) -> None:
    text = str(answer)
    assert toy_exact(rec(answer), text) == toy_partial(rec(answer), text) == toy_format(rec(answer), text) == 1.0


@pytest.mark.parametrize("ops", ["+", "+-"])
def test_random_policy_gets_varied_nonzero_rewards(ops: str) -> None:
    """Uniform sampling over the allowed ids (the masked random-init policy, 4-token budget): every reward is
    reachable and partial credit is non-zero often enough that many GRPO groups of 8 have variance."""
    rng = random.Random(0)
    tokenizer = ByteTokenizer()
    records = generate_toy_records(0, 2000, max_operand=9, ops=ops)
    allowed = toy_allowed_token_ids(ops)
    scores: dict[str, list[float]] = {"exact": [], "partial": [], "format": []}
    for record in records:
        ids: list[int] = []
        while len(ids) < 4 and (not ids or ids[-1] != EOS_ID):
            ids.append(rng.choice(allowed))
        completion = tokenizer.decode(ids)
        scores["exact"].append(toy_exact(record, completion))
        scores["partial"].append(toy_partial(record, completion))
        scores["format"].append(toy_format(record, completion))
    assert 0.0 < statistics.mean(scores["exact"]) < 0.05              # rare but reachable
    assert sum(value > 0 for value in scores["partial"]) / len(records) > 0.05
    assert 0.5 < statistics.mean(scores["format"]) < 0.95
    assert statistics.pstdev(scores["partial"]) > 0.1 and statistics.pstdev(scores["format"]) > 0.3

"""Commerce records: determinism, verifiable references for all four tasks, the split, the fixed eval set, and the
user's own files (errors name the file and line)."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from aegir.errors import InputError
from aegir.tasks.commerce.pairs import (
    DEFAULT_EVAL_MINIMUMS,
    TASKS,
    build_pairs,
    format_answer,
    format_brl,
    format_number_pt,
    push_violations,
    run_gold_sql,
    split_pairs,
    stratified_eval_set,
)
from aegir.tasks.commerce.user_data import check_user_db, load_user_pairs
from aegir.tasks.commerce.world import WorldInfo, build_world

SEED = 3
COUNTS = {"extraction": 80, "sql_qa": 70, "insights": 60, "push": 60}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WorldInfo:
    return build_world(SEED, tmp_path_factory.mktemp("world") / "commerce.db")


@pytest.fixture(scope="module")
def records(world: WorldInfo) -> list[dict]:
    return build_pairs(SEED, world, COUNTS)


def of_task(records: list[dict], task: str) -> list[dict]:
    return [record for record in records if record["task"] == task]


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


def test_records_are_deterministic_prefix_stable_and_independent_of_the_world_location(
        records: list[dict], world: WorldInfo, tmp_path: Path) -> None:
    assert build_pairs(SEED, world, COUNTS) == records
    fewer = build_pairs(SEED, world, {"sql_qa": 30, "push": 10})
    assert fewer == of_task(records, "sql_qa")[:30] + of_task(records, "push")[:10]
    elsewhere = build_pairs(SEED, build_world(SEED, tmp_path / "copy.db"), COUNTS)
    strip = lambda rows: [{k: v for k, v in row.items() if k != "db_path"} for row in rows]  # noqa: E731
    assert strip(elsewhere) == strip(records)


def test_every_record_has_the_chat_schema(records: list[dict]) -> None:
    assert Counter(record["task"] for record in records) == COUNTS
    assert len({record["id"] for record in records}) == len(records)
    for record in records:
        assert record["task"] in TASKS and isinstance(record["template"], str)
        assert [message["role"] for message in record["prompt"]] == ["system", "user"]
        assert all(isinstance(message["content"], str) and message["content"] for message in record["prompt"])
        assert isinstance(record["reference"], str) and record["reference"]
    prompts = [record["prompt"][-1]["content"] for record in of_task(records, "sql_qa")]
    assert len(set(prompts)) == len(prompts)


def test_sql_qa_answers_reexecute_and_references_state_them(records: list[dict], world: WorldInfo) -> None:
    templates = set()
    for record in of_task(records, "sql_qa"):
        templates.add(record["template"])
        assert record["db_path"] == str(world.path.resolve())
        answer = run_gold_sql(record["db_path"], record["gold_sql"])
        assert answer == record["answer"] and answer is not None
        assert isinstance(record["answer"], (int, float, str)) and not isinstance(record["answer"], bool)
        assert record["reference"] == f"```sql\n{record['gold_sql']}\n```\nResposta: {format_answer(answer)}"
    assert len(templates) >= 8


def test_extraction_references_are_the_fields_as_json_and_the_text_writes_them_brazilian_style(
        records: list[dict]) -> None:
    for record in of_task(records, "extraction"):
        fields = record["fields"]
        assert json.loads(record["reference"]) == fields
        text = record["prompt"][-1]["content"]
        assert fields["pedido_id"] in text
        if record["template"] == "order":
            assert set(fields) == {"pedido_id", "cliente", "cidade", "uf", "data_compra", "valor_total",
                                   "forma_pagamento", "parcelas"}
            assert isinstance(fields["valor_total"], float) and isinstance(fields["parcelas"], float)
            assert format_number_pt(fields["valor_total"]) in text
            assert fields["cliente"] in text and fields["cidade"] in text
            day = date.fromisoformat(fields["data_compra"])
        else:
            assert set(fields) == {"pedido_id", "produto", "nota", "data_avaliacao", "sentimento"}
            assert isinstance(fields["nota"], float) and fields["produto"] in text
            day = date.fromisoformat(fields["data_avaliacao"])
        assert day.strftime("%d/%m/%Y") in text or f" de {day.year}" in text
    assert {record["template"] for record in of_task(records, "extraction")} == {"order", "review"}


def test_insights_references_mention_entities_and_numbers(records: list[dict]) -> None:
    for record in of_task(records, "insights"):
        reference = record["reference"]
        assert record["numbers"] and all(isinstance(number, float) for number in record["numbers"])
        assert 0 < record["tolerance"] < 0.1
        for entity in record["entities"]:
            assert entity in reference
        for number in record["numbers"]:
            spellings = {format_number_pt(number, 2), format_number_pt(number, 1)}
            if number.is_integer():
                spellings.add(str(int(number)))
            assert any(spelling in reference for spelling in spellings), (number, reference)


def test_push_references_satisfy_their_constraints(records: list[dict]) -> None:
    for record in of_task(records, "push"):
        constraints = record["constraints"]
        assert set(constraints) == {"max_chars", "must_mention", "discount_pct", "cta"}
        assert push_violations(record["reference"], constraints) == []
        assert record["segment_size"] >= 5 and str(constraints["max_chars"]) in record["prompt"][-1]["content"]
    constraints = {"max_chars": 30, "must_mention": ["Pix"], "discount_pct": 10, "cta": True}
    assert len(push_violations("Uma mensagem longa demais sem nada do que foi pedido", constraints)) == 4
    assert push_violations("No PIX: 10% OFF! Confira!", constraints) == []


def test_brazilian_formats() -> None:
    assert format_brl(1234.56) == "R$ 1.234,56"
    assert format_number_pt(1234567.891, 1) == "1.234.567,9"
    assert format_answer(12) == "12" and format_answer(7.5) == "7.5" and format_answer(3.0) == "3"
    assert format_answer(1234.56) == "1234.56" and format_answer("SP") == "SP"


def test_bad_counts_are_input_errors(world: WorldInfo) -> None:
    with pytest.raises(InputError, match="unknown task 'chat'"):
        build_pairs(SEED, world, {"chat": 3})
    with pytest.raises(InputError, match="n_per_task.push"):
        build_pairs(SEED, world, {"push": -1})


# ---------------------------------------------------------------------------------------------------------------
# Split and the fixed eval set
# ---------------------------------------------------------------------------------------------------------------


def test_split_is_deterministic_stratified_and_by_id(records: list[dict]) -> None:
    train, evaluation = split_pairs(records, SEED, 0.25)
    assert (train, evaluation) == split_pairs(records, SEED, 0.25)
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in evaluation})
    assert len(train) + len(evaluation) == len(records)
    assert Counter(r["task"] for r in evaluation) == {task: round(0.25 * n) for task, n in COUNTS.items()}
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert {r["id"] for r in split_pairs(shuffled, SEED, 0.25)[1]} == {r["id"] for r in evaluation}
    assert {r["id"] for r in split_pairs(records, SEED + 1, 0.25)[1]} != {r["id"] for r in evaluation}
    with pytest.raises(InputError, match="eval_fraction"):
        split_pairs(records, SEED, 1.0)


def test_stratified_eval_set_is_fixed_and_hashed(records: list[dict], world: WorldInfo, tmp_path: Path) -> None:
    _, evaluation = split_pairs(records, SEED, 0.3)
    chosen, digest = stratified_eval_set(evaluation, data_seed=SEED)
    assert Counter(r["task"] for r in chosen) == DEFAULT_EVAL_MINIMUMS
    assert stratified_eval_set(list(reversed(evaluation)), data_seed=SEED) == (chosen, digest)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # The same records from a world built elsewhere hash the same: db_path is a location, not content.
    moved = build_pairs(SEED, build_world(SEED, tmp_path / "moved.db"), COUNTS)
    assert stratified_eval_set(split_pairs(moved, SEED, 0.3)[1], data_seed=SEED)[1] == digest
    assert stratified_eval_set(evaluation, data_seed=SEED + 1)[1] != digest
    with pytest.raises(InputError, match="task 'push' has 9 eval records, needs at least 15"):
        stratified_eval_set(of_task(evaluation, "push")[:9], {"push": 15}, data_seed=SEED)


# ---------------------------------------------------------------------------------------------------------------
# The user's own files
# ---------------------------------------------------------------------------------------------------------------

GOOD = {"task": "sql_qa", "prompt": [{"role": "user", "content": "Quantos pedidos?"}], "reference": "Resposta: 1",
        "answer": 1}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n",
                    encoding="utf-8")
    return path


def test_user_pairs_load_and_get_default_ids(tmp_path: Path) -> None:
    push = {"task": "push", "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "constraints": {"max_chars": 80, "must_mention": ["Pix"], "discount_pct": None, "cta": True}}
    loaded = load_user_pairs(write_jsonl(tmp_path / "ok.jsonl", [GOOD, "", push]), require_task_fields=True)
    assert [record["id"] for record in loaded] == ["line-1", "line-3"]
    assert loaded[1]["constraints"]["must_mention"] == ["Pix"]


@pytest.mark.parametrize("bad, line, problem", [
    ("{not json", 2, "invalid JSON"),
    ("[1, 2]", 2, "expected a JSON object"),
    ({**GOOD, "task": "chat"}, 3, "task must be one of extraction, sql_qa, insights, push"),
    ({**GOOD, "prompt": []}, 3, "prompt must be a non-empty list"),
    ({**GOOD, "prompt": [{"role": "bot", "content": "x"}]}, 3, "role in system, user, assistant"),
    ({**GOOD, "reference": 5}, 3, "reference must be a string"),
    ({**GOOD, "id": "line-1"}, 3, "duplicate id"),
    ({**GOOD, "task": "push", "constraints": {"max_chars": "80"}}, 3, "push record needs 'constraints'"),
    ({**GOOD, "task": "insights", "numbers": ["dez"]}, 3, "insights record needs"),
])
def test_user_pair_errors_name_the_file_and_line(tmp_path: Path, bad, line: int, problem: str) -> None:
    rows = [GOOD, bad] if line == 2 else [GOOD, "", bad, {**GOOD, "task": "chat"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError) as caught:
        load_user_pairs(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: ") and problem in message and "\n" not in message


def test_missing_task_fields_are_errors_only_when_required(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sft.jsonl", [{"task": "extraction", "prompt": GOOD["prompt"], "reference": "{}"}])
    assert len(load_user_pairs(path)) == 1
    with pytest.raises(InputError, match=r"sft\.jsonl:1: extraction record needs 'fields'"):
        load_user_pairs(path, require_task_fields=True)
    with pytest.raises(InputError, match="no such file"):
        load_user_pairs(tmp_path / "absent.jsonl")


def test_check_user_db(world: WorldInfo, tmp_path: Path) -> None:
    assert check_user_db(world.path) == world.row_counts
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    with pytest.raises(InputError, match="not an SQLite database"):
        check_user_db(text)
    partial = tmp_path / "partial.db"
    connection = sqlite3.connect(partial)
    connection.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    connection.execute("CREATE TABLE orders (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(InputError) as caught:
        check_user_db(partial)
    assert str(caught.value).startswith(f"{partial}: missing tables: sellers, categories, products, order_items, "
                                         "payments, reviews")

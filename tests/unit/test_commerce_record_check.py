"""Issue 19 item 6: sql_qa records the v42 rewards cannot score are refused at load (one line naming file and line),
and reward errors during training reach the console and summary.json (count and first message)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import aegir.tasks.commerce.rewards  # noqa: F401 - registers the commerce verifiers
from aegir.config import load_group
from aegir.errors import InputError
from aegir.rl.rewards import RewardSpec, check_records
from aegir.tasks.commerce.task import prepare_commerce
from aegir.tasks.commerce.world import build_world

V42 = {"components": {"extraction_fields": {"weight": 1.0}, "sql_exec": {"weight": 1.0},
                      "insights_match": {"weight": 1.0}, "push_rules": {"weight": 1.0}}, "workers": 0}
PROMPT = [{"role": "user", "content": "Quantos pedidos?"}]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(3, tmp_path_factory.mktemp("world") / "commerce.sqlite", scale="tiny").path


def load(tmp_path: Path, db: Path, rows: list[dict]) -> tuple[object, Path]:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"id": f"r{i}", "task": "sql_qa", "prompt": PROMPT, **row})
                               for i, row in enumerate(rows)) + "\n")
    cfg = load_group("task", "commerce", tasks=["sql_qa"], eval_minimums={"sql_qa": 1},
                     data={"db": str(db), "pairs": str(pairs), "scale": "tiny", "eval_fraction": 0.25})
    return prepare_commerce(cfg, 0, tmp_path / "cache"), pairs


GOOD = {"gold_sql": "SELECT COUNT(*) FROM orders", "answer": 1}


@pytest.mark.parametrize("bad, why", [
    ({"gold_sql": "SELECT COUNT(*) FROM orders"}, "'answer' is None"),
    ({"gold_sql": "SELECT nope FROM orders", "answer": 1}, "gold SQL fails in the sandbox"),
    ({"gold_sql": "DELETE FROM orders", "answer": 1}, "gold SQL fails in the sandbox"),
])
def test_unscorable_sql_records_are_refused_at_load_naming_file_and_line(tmp_path: Path, db: Path, bad: dict,
                                                                         why: str) -> None:
    data, pairs = load(tmp_path, db, [GOOD, GOOD, bad, GOOD])
    spec = RewardSpec.from_config(V42)
    with pytest.raises(InputError) as error:
        check_records(spec, data.records, data.where)
    message = str(error.value)
    assert len(data.records) == 4  # every record is checked, held-out ones the eval set does not use included
    assert message.startswith(f"{pairs}:3: reward sql_exec cannot score this record") and why in message
    assert "\n" not in message


def test_scorable_records_pass_and_other_rewards_do_not_need_sql_fields(tmp_path: Path, db: Path) -> None:
    data, _ = load(tmp_path, db, [GOOD] * 4)
    check_records(RewardSpec.from_config(V42), data.records, data.where)
    keyword_only = {"components": {"push_rules": {"weight": 1.0}}, "workers": 0}
    data, _ = load(tmp_path, db, [GOOD, {"gold_sql": "SELECT nope FROM orders", "answer": 1}] * 2)
    check_records(RewardSpec.from_config(keyword_only), data.records, data.where)


def test_generated_records_are_named_by_id(tmp_path: Path) -> None:
    spec = RewardSpec.from_config(V42)
    record = {"id": "sql_qa-0001", "task": "sql_qa", "gold_sql": "SELECT 1", "db_path": "/nonexistent.db"}
    with pytest.raises(InputError, match=r"^generated record sql_qa-0001: reward sql_exec"):
        from aegir.tasks.commerce.task import CommerceData

        check_records(spec, [record], CommerceData([], []).where)


def test_reward_errors_reach_the_console_and_the_summary_counter(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from tests.unit.test_grpo_loop_rewards import _module

    module = _module(tmp_path, {"test_raise_on_bad": 1.0})
    with caplog.at_level(logging.WARNING, logger="aegir"):
        module._score_texts([{"id": 1}, {"id": 2}, {"id": 3}], ["bad", "good", "bad"], "train")
        module._score_texts([{"id": 4}], ["bad again"], "eval")
    assert module.reward_errors == {"count": 3, "first": "test_raise_on_bad: ValueError: boom on bad"}
    assert "reward errors: 2 of 3 calls failed (train" in caplog.text and "boom on bad" in caplog.text
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [e["phase"] for e in errors] == ["train", "train", "eval"]
    checkpoint: dict = {"state_dict": {}}
    module.on_save_checkpoint(checkpoint)
    fresh = _module(tmp_path, {"test_raise_on_bad": 1.0})
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.reward_errors == module.reward_errors  # a resumed run keeps counting


@pytest.mark.slow
def test_cli_grpo_on_an_unscorable_record_exits_2_with_one_line(tmp_path: Path, db: Path) -> None:
    """Before: the run trained, exited 0 with eval/reward 0.0, and the errors were only in samples/errors.jsonl."""
    from tests.conftest import run_cli

    _, pairs = load(tmp_path, db, [GOOD, GOOD, GOOD, {"gold_sql": "SELECT COUNT(*) FROM orders"}, GOOD, GOOD])
    result = run_cli(["task=commerce", "algo=grpo", "reward=v42", "objective.metric=eval/reward",
                      "objective.mode=max", f"task.data.db={db}", f"task.data.pairs={pairs}", "task.tasks=[sql_qa]",
                      "task.eval_minimums.sql_qa=1", f"paths.output_root={tmp_path}/o", "trainer.max_steps=1"],
                     cwd=tmp_path, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and "[INFO]" not in line]
    assert len(lines) == 1 and f"{pairs}:4: reward sql_exec cannot score this record" in lines[0], result.stderr
    assert not list((tmp_path / "o").rglob("metadata.json"))

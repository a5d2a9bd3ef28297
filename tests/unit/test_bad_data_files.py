"""Issue 19 item 7: bad data files are one line naming the file (InputError: exit status 2), never a traceback or
a hang: task.data.db missing or a directory, deeply nested JSON, a JSON lone surrogate, a FIFO or /dev/null."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aegir.config import load_group
from aegir.errors import InputError
from aegir.exit_status import INPUT_ERROR, exit_status
from aegir.tasks.commerce.task import prepare_commerce
from aegir.tasks.commerce.user_data import check_user_db, load_user_pairs
from aegir.tasks.data_files import parse_json_line
from aegir.tasks.pretrain.corpus import load_user_corpus

PROMPT = [{"role": "user", "content": "Quantos pedidos?"}]
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_RECORD = '{"text": ' + DEEP + "}"
SURROGATE_TEXT = '{"text": "bad \\ud800 text"}'


def one_line(error: pytest.ExceptionInfo[InputError]) -> str:
    message = str(error.value)
    assert "\n" not in message and exit_status(error.value) == INPUT_ERROR
    return message


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    return path


def commerce_cfg(**data: object) -> Any:
    return load_group("task", "commerce", tasks=["sql_qa"], eval_minimums={"sql_qa": 1},
                      data={"db": None, "pairs": None, "scale": "tiny", "n_per_task": {"sql_qa": 4},
                            "eval_fraction": 0.25, **data})


@pytest.mark.parametrize("make", ["missing", "directory", "fifo", "dev_null"])
def test_commerce_db_that_is_not_a_file_is_one_line(tmp_path: Path, make: str) -> None:
    path = {"missing": tmp_path / "nope.sqlite", "directory": tmp_path, "dev_null": Path("/dev/null")}.get(make)
    if make == "fifo":
        path = tmp_path / "db.sqlite"
        os.mkfifo(path)
    with pytest.raises(InputError) as error:  # before the fix: hashed first -> FileNotFoundError/IsADirectoryError
        prepare_commerce(commerce_cfg(db=str(path)), 0, tmp_path / "cache")
    assert str(path.resolve()) in one_line(error)
    with pytest.raises(InputError):
        check_user_db(path)


@pytest.mark.parametrize("target", ["fifo", "dev_null"])
def test_corpus_path_that_is_a_fifo_or_device_is_one_line(fifo: Path, target: str) -> None:
    path = fifo if target == "fifo" else Path("/dev/null")
    with pytest.raises(InputError) as error:
        load_user_corpus(path, val_fraction=0.1, seed=0)
    message = one_line(error)
    assert str(path) in message and ("FIFO" in message or "character device" in message)


def test_pairs_path_that_is_a_fifo_is_one_line(fifo: Path) -> None:
    with pytest.raises(InputError) as error:
        load_user_pairs(fifo)
    assert "FIFO" in one_line(error)


def test_deeply_nested_json_is_one_line(tmp_path: Path) -> None:
    corpus = tmp_path / "deep.jsonl"
    corpus.write_text('{"text": "fine"}\n' + DEEP_RECORD + "\n")
    with pytest.raises(InputError) as error:
        load_user_corpus(corpus, val_fraction=0.0, seed=0)
    assert f"{corpus}:2" in one_line(error) and "nested too deeply" in str(error.value)
    pairs = tmp_path / "deep_pairs.jsonl"
    pairs.write_text(json.dumps({"task": "sql_qa", "prompt": PROMPT, "answer": 1}) + "\n"
                     + '{"task": "sql_qa", "prompt": ' + DEEP + "}\n")
    with pytest.raises(InputError) as error:
        load_user_pairs(pairs)
    assert f"{pairs}:2" in one_line(error) and "nested too deeply" in str(error.value)


def test_lone_surrogate_is_one_line(tmp_path: Path) -> None:
    corpus = tmp_path / "surrogate.jsonl"
    corpus.write_text('{"text": "fine"}\n' + SURROGATE_TEXT + "\n")
    with pytest.raises(InputError) as error:  # before the fix: accepted, then a UnicodeEncodeError mid-run
        load_user_corpus(corpus, val_fraction=0.0, seed=0)
    assert f"{corpus}:2" in one_line(error) and "surrogate" in str(error.value)
    pairs = tmp_path / "surrogate_pairs.jsonl"
    pairs.write_text(json.dumps({"task": "sql_qa", "prompt": [{"role": "user", "content": "ok"}], "answer": 1})
                     + '\n{"task": "sql_qa", "prompt": [{"role": "user", "content": "x\\udc00"}], "answer": 1}\n')
    with pytest.raises(InputError) as error:
        load_user_pairs(pairs)
    assert f"{pairs}:2" in one_line(error) and "surrogate" in str(error.value)


def test_valid_surrogate_pairs_and_deep_but_sane_json_are_accepted() -> None:
    assert parse_json_line('{"t": "\\ud83d\\ude00"}', "x:1") == {"t": "\U0001f600"}
    assert parse_json_line("[" * 50 + "]" * 50, "x:1") is not None
    with pytest.raises(InputError, match=r"^x:1: invalid JSON: a lone surrogate \\udfff"):
        parse_json_line('{"\\udfff": 1}', "x:1")  # keys too


@pytest.mark.slow
def test_cli_fifo_corpus_exits_2_with_one_line(tmp_path: Path, fifo: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli(["task.data.source=files", f"task.data.path={fifo}", f"paths.output_root={tmp_path}/o",
                      "trainer.max_steps=1"], cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(fifo) in lines[0] and "FIFO" in lines[0], result.stderr

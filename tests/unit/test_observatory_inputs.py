"""The observatory's inputs: built probe sets, the user's probe file and boards, config ranges, answer judging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegir.config import validate
from aegir.errors import InputError
from aegir.observe.hard_examples import judge_text, parse_number
from aegir.observe.probes import (BOARDS_DIR, load_board, load_probe_file, pretrain_probes, probe_set_sha256,
                                  toy_difficulty, toy_probes)
from aegir.run.compose import compose_config


def test_built_probe_sets_depend_on_data_seed_only_and_cover_every_skill() -> None:
    a, b = pretrain_probes(0, 40, 64), pretrain_probes(0, 40, 64)
    assert a == b and len(a) == 40 and probe_set_sha256(a) == probe_set_sha256(b)
    assert {p["skill"] for p in a} == {"ontology", "ddl", "rows", "prose"}
    assert all(len(p["text"].encode()) <= 64 for p in a)
    assert len({p["id"] for p in a}) == 40
    assert probe_set_sha256(pretrain_probes(1, 40, 64)) != probe_set_sha256(a)
    toy = toy_probes(0, 200, 9, "+")
    assert len(toy) == 100 and {p["skill"] for p in toy} == {"easy", "medium", "hard"}  # the whole problem space
    assert toy_difficulty(2, "+", 3, 5) == "easy" and toy_difficulty(6, "+", 3, 9) == "medium"
    assert toy_difficulty(9, "+", 9, 18) == "hard"


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "probes.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_user_probe_file_is_checked_line_by_line(tmp_path: Path) -> None:
    good = [json.dumps({"id": f"p{i}", "skill": "s", "prompt": "2+2=", "answer": "4"}) for i in range(3)]
    assert len(load_probe_file(_write(tmp_path, good))) == 3
    cases = {
        "not valid JSON": [good[0], "{oops"],
        "'skill' must be a non-empty string": [good[0], json.dumps({"id": "x", "text": "t"})],
        "duplicate id 'p0'": [good[0], good[0]],
        "give exactly one of 'text' or 'prompt'": [good[0], json.dumps({"id": "x", "skill": "s"})],
        "unknown key(s) colour": [good[0], json.dumps({"id": "x", "skill": "s", "text": "t", "colour": 1})],
    }
    for message, lines in cases.items():
        path = _write(tmp_path, lines)
        with pytest.raises(InputError) as err:
            load_probe_file(path)
        assert str(err.value) == f"observatory probe file {path}, line 2: {message}" or message in str(err.value)
        assert f"{path}, line 2" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="at least 3 probes"):
        load_probe_file(_write(tmp_path, good[:2]))


def test_config_ranges_and_probe_file_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^config error: callbacks\.observatory\.probes\.n: must be >= 3"):
        validate(compose_config(["callbacks=observatory", "callbacks.observatory.probes.n=2"]))
    with pytest.raises(InputError, match=r"callbacks\.observatory\.geometry\.map: 'tsne' is not one of"):
        validate(compose_config(["callbacks=observatory", "callbacks.observatory.geometry.map=tsne"]))
    with pytest.raises(InputError, match=r"unknown key"):
        validate(compose_config(["callbacks=observatory", "+callbacks.observatory.history.colour=1"]))
    bad = _write(tmp_path, ["{}"])
    with pytest.raises(InputError, match=r"line 1: 'id' must be a non-empty string"):
        validate(compose_config(["callbacks=observatory", f"callbacks.observatory.probes.file={bad}"]))
    cfg = validate(compose_config([]))
    assert cfg.callbacks.observatory.enabled is False and cfg.callbacks.observatory.probes.n == 200
    assert validate(compose_config(["callbacks=observatory"])).callbacks.observatory.enabled is True


def test_shipped_boards_load_and_bad_boards_name_the_entry(tmp_path: Path) -> None:
    for name in ("toy_arith", "commerce", "pretrain"):
        assert len(load_board(BOARDS_DIR / f"{name}.yaml")) >= 5
    path = tmp_path / "board.yaml"
    path.write_text("examples:\n  - {id: a, category: c, prompt: p, expected: e}\n  - {id: b, category: c}\n")
    with pytest.raises(InputError, match=r"board.yaml, example 2: 'expected' is missing or empty"):
        load_board(path)


def test_parse_number_reads_brazilian_and_english_notation() -> None:
    assert parse_number("total: R$ 1.234,56 no cartão") == pytest.approx(1234.56)
    assert parse_number("1,234.56") == pytest.approx(1234.56)
    assert parse_number("2.050 reais") == 2050.0
    assert parse_number("12,5") == 12.5 and parse_number("0,125") == 0.125 and parse_number("-3") == -3.0
    assert parse_number("1.198,80") == pytest.approx(1198.8) and parse_number("sem número") is None


def test_judge_text_error_types() -> None:
    item = {"expected": "15", "format": r"^-?\d+$"}
    assert judge_text(item, " 15 ", False) == (True, None)
    assert judge_text(item, "16", False) == (False, "wrong answer")
    assert judge_text(item, "abc", False) == (False, "format error")
    assert judge_text(item, "1111111", True) == (False, "truncated")
    assert judge_text({"expected": "VALUES (", "match": "prefix"}, "VALUES (1, 2", True) == (True, None)
    assert judge_text({"expected": "1234.56", "match": "number"}, "R$ 1.234,56", False) == (True, None)
    assert judge_text({"expected": "1234.56", "match": "number"}, "nada", False) == (False, "format error")


def test_observe_rows_are_appended_and_read_back_last_per_step(tmp_path: Path) -> None:
    from aegir.observe.observatory import append_row, read_rows

    path = tmp_path / "rows.jsonl"
    append_row(path, {"step": 0, "x": 1.0})
    append_row(path, {"step": 4, "x": float("nan")})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"step": 8, "x": ')  # a process killed mid-write
    append_row(path, {"step": 4, "x": 3.0})  # a resumed run re-does step 4 on a fresh line
    assert path.read_text().count("\n") == 4
    assert read_rows(path) == [{"step": 0, "x": 1.0}, {"step": 4, "x": 3.0}]
    assert read_rows(path, max_step=0) == [{"step": 0, "x": 1.0}]
    assert read_rows(tmp_path / "missing.jsonl") == []

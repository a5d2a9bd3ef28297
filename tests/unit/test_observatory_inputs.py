"""The observatory's inputs: built probe sets, the user's probe file and boards, config ranges, answer judging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegir.config import validate
from aegir.errors import InputError
from aegir.config.groups import group_options
from aegir.observe.hard_examples import column_board, composition_score, judge_text, parse_number
from aegir.observe.probes import (BOARDS_DIR, check_board_task, load_board, load_probe_file, pretrain_probes,
                                  probe_set_sha256, toy_difficulty, toy_probes)
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


def test_the_observatory_receives_typed_sections_with_the_yaml_defaults(tmp_path: Path) -> None:
    from aegir.config.groups import group_defaults
    from aegir.config.schema import PretrainTaskConfig
    from aegir.observe.config import ObservatoryConfig
    from aegir.observe.observatory_callback import ObservatoryCallback
    from aegir.rundir import RunPaths

    cfg = validate(compose_config(["callbacks=observatory", "callbacks.observatory.radar.gif=false"]))
    callback = ObservatoryCallback.from_config(cfg, RunPaths(tmp_path))
    assert isinstance(callback.obs_cfg, ObservatoryConfig) and isinstance(callback.task, PretrainTaskConfig)
    defaults = group_defaults("callbacks", "default")["observatory"]
    assert callback.obs_cfg.enabled is True and callback.obs_cfg.radar.gif is False
    assert callback.obs_cfg.hard_examples.max_new_tokens == defaults["hard_examples"]["max_new_tokens"]
    assert callback.obs_cfg.probes.n == defaults["probes"]["n"] and callback.obs_cfg.hard_examples.file is None


def test_a_moved_multi_stage_run_finds_its_earlier_stage_checkpoint(tmp_path: Path) -> None:
    from aegir.observe.__main__ import _moved_parent

    best = tmp_path / "moved" / "stages" / "1_pretrain" / "checkpoints" / "best.ckpt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"x")
    recorded = "/gone/runs/r1/stages/1_pretrain/checkpoints/best.ckpt"
    assert _moved_parent(recorded, tmp_path / "moved") == str(best)
    assert _moved_parent(recorded, None) == recorded and _moved_parent(None, tmp_path / "moved") is None
    assert _moved_parent("/gone/other.ckpt", tmp_path / "moved") == "/gone/other.ckpt"


def test_every_task_ships_a_board_and_every_board_loads() -> None:
    tasks = set(group_options("task"))
    boards = {path.stem for path in BOARDS_DIR.glob("*.yaml")}
    assert tasks == {"commerce", "cpa", "cta", "ontology", "pretrain", "toy_arith"} and boards == tasks
    for name in sorted(boards):
        board = load_board(BOARDS_DIR / f"{name}.yaml")
        assert len(board) >= 5 and len({item["category"] for item in board}) >= 2, name


def test_column_boards_use_the_tasks_labels_and_serialize_as_its_data() -> None:
    from aegir.tasks.tables.labels import load_label_map
    from aegir.tasks.tables.serialize import SerializeBudget, render

    labels = load_label_map()
    budget = SerializeBudget(target_bytes=64, per_column_bytes=24, total_bytes=96)
    for kind in ("cta", "cpa"):
        path = BOARDS_DIR / f"{kind}.yaml"
        board = load_board(path)
        assert {item["expected"] for item in board} <= set(labels.labels(kind)), kind
        assert all(("main" in item["columns"]) == (kind == "cpa") for item in board), kind
        serialized = column_board(board, budget, labels.labels(kind), path, shipped=True)
        assert len(serialized) == len(board)
        for item in serialized:
            text = render(item["ids"])
            assert len(item["ids"]) <= 96 and text.startswith("<|cls|>target: ") and text.endswith("<|sep|>")
            assert ("<|sep|>main: " in text) == (kind == "cpa")
    # By hand: the target segment is 8 + 53 bytes (<= 64); the context gets min(24, 96 - 63 - 1) = 24 bytes, the
    # marker's 9 and 15 of its first value, cut at a character boundary ("ê" is two bytes).
    first = load_board(BOARDS_DIR / "cta.yaml")[0]
    assert render(column_board([first], budget, labels.cta_labels, "b", shipped=True)[0]["ids"]) == \
        "<|cls|>target: R$ 1.299,90 | 89,90 | R$ 12,50 | 2.450,00 | R$ 349,00<|sep|>context: Tênis Corrida <|sep|>"


def test_a_label_the_run_lacks_drops_a_shipped_example_and_refuses_a_users() -> None:
    from aegir.tasks.tables.serialize import SerializeBudget

    board = [{"id": "a", "category": "c", "expected": "price", "columns": {"target": ["1,50"]}},
             {"id": "b", "category": "c", "expected": "Telephone", "columns": {"target": ["+55 11 3061-2000"]}}]
    kept = column_board(board, SerializeBudget(), ["price", "telephone"], "shipped.yaml", shipped=True)
    assert [item["id"] for item in kept] == ["a"]
    with pytest.raises(InputError, match=r"^hard-example board mine.yaml, example 'b': expected label 'Telephone' "
                                         r"is not one of the task's 2 labels$"):
        column_board(board, SerializeBudget(), ["price", "telephone"], "mine.yaml", shipped=False)


def test_a_board_must_fit_its_task_before_the_run_starts(tmp_path: Path) -> None:
    path = tmp_path / "board.yaml"
    path.write_text("examples:\n  - {id: a, category: c, columns: {target: ['1,50']}, expected: price}\n")
    with pytest.raises(InputError, match=r"example 'a': 'columns.main' is required for cpa$"):
        check_board_task(load_board(path), path, "cpa")
    check_board_task(load_board(path), path, "cta")
    with pytest.raises(InputError, match=rf"^hard-example board {path}, example 'a': task=pretrain generates text: "
                                         r"give a 'prompt'"):  # the default task, before any work
        validate(compose_config(["callbacks=observatory", f"callbacks.observatory.hard_examples.file={path}"]))
    with pytest.raises(InputError, match=r"example 'a': task=cta classifies columns: give 'columns'"):
        check_board_task([{"id": "a", "prompt": "p"}], path, "cta")


def test_ontology_board_prompts_are_the_tasks_and_references_get_full_marks() -> None:
    from aegir.tasks.ontology.task import SYSTEM

    board = load_board(BOARDS_DIR / "ontology.yaml")
    for item in board:
        assert item["prompt"][0] == {"role": "system", "content": SYSTEM}
        assert item["prompt"][1]["content"].startswith("CREATE TABLE ")
        assert judge_text(item, item["expected"], False) == (True, None)
        assert composition_score(item, item["expected"]) == 1.0
        assert len(item["expected"].encode()) < item["max_new_tokens"] == 320
    item = board[0]
    assert judge_text(item, "not a composition", False) == (False, "format error")
    assert judge_text(item, "not a composition", True) == (False, "truncated")
    partial = item["expected"].splitlines()[0]  # the class alone: well formed, not full marks
    assert judge_text(item, partial, False) == (False, "wrong answer") and 0 < composition_score(item, partial) < 1


def test_bad_boards_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "board.yaml"
    cases = {
        "examples:\n  - {id: a, category: c, prompt: p, expected: e}\n  - {id: b, category: c}\n":
            r"board.yaml, example 2: 'expected' is missing or empty",
        "examples:\n  - {id: a, category: c, prompt: p, columns: {target: [x]}, expected: e}\n":
            r"example 1: give exactly one of 'prompt' \(generating tasks\) or 'columns'",
        "examples:\n  - {id: a, category: c, columns: {target: []}, expected: e}\n":
            r"example 1: 'columns' 'target' must be a non-empty list of values",
        "examples:\n  - {id: a, category: c, columns: {target: [x], side: [y]}, expected: e}\n":
            r"example 1: 'columns' has unknown key\(s\) side",
        "examples:\n  - {id: a, category: c, prompt: p, expected: e, match: composition}\n":
            r"example 1: 'match: composition' needs the footprint",
        "max_new_tokens: 0\nexamples:\n  - {id: a, category: c, prompt: p, expected: e}\n":
            r"'max_new_tokens' must be an integer >= 1, got 0",
        "colour: 1\nexamples:\n  - {id: a, category: c, prompt: p, expected: e}\n":
            r"unknown top-level key\(s\) colour",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(InputError, match=message) as err:
            load_board(path)
        assert "\n" not in str(err.value)


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

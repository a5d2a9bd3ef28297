"""The run directory contract's files: atomic JSON, and a history log that survives a torn last line."""

from __future__ import annotations

import json
from pathlib import Path

from aegir.rundir import (HistoryWriter, RunPaths, config_hash, iter_history, read_history, read_json,
                          update_json, write_json_atomic)


def test_paths_follow_the_contract(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    assert paths.metadata.name == "metadata.json" and paths.summary.name == "summary.json"
    assert paths.history.name == "history.jsonl" and paths.tb.name == "tb"
    assert paths.last_ckpt == tmp_path / "checkpoints" / "last.ckpt"
    assert paths.best_ckpt == tmp_path / "checkpoints" / "best.ckpt"
    assert paths.stage(2, "sft").root == tmp_path / "stages" / "2_sft"


def test_atomic_json_roundtrip_and_update(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_json_atomic(path, {"a": 1, "nan": float("nan"), "nested": {"inf": float("inf")}})
    assert read_json(path) == {"a": 1, "nan": None, "nested": {"inf": None}}
    update_json(path, status="finished")
    assert read_json(path)["status"] == "finished"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary files left


def test_history_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    writer.write(1, {"train/loss": 3.0})
    writer.write(2, {"train/loss": 2.5, "val/bpb": 3.1})
    writer.close()
    with open(path, "a", encoding="utf-8") as fh:  # a process killed in the middle of a write
        fh.write('{"step": 3, "time": 1.0, "train/lo')
    assert read_history(path) == {"train/loss": [(1, 3.0), (2, 2.5)], "val/bpb": [(2, 3.1)]}
    # The next writer (a resumed run) starts a fresh line; the torn fragment stays skipped, nothing is lost.
    writer = HistoryWriter(path)
    writer.write(3, {"train/loss": 2.0})
    writer.close()
    assert read_history(path)["train/loss"] == [(1, 3.0), (2, 2.5), (3, 2.0)]
    lines = path.read_text().splitlines()
    assert lines[2].startswith('{"step": 3, "time": 1.0, "train/lo') and json.loads(lines[3])["step"] == 3


def test_history_relogged_steps_keep_the_latest_record(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    for step, value in [(1, 5.0), (2, 4.0), (3, 3.9), (2, 4.1), (3, 3.8)]:  # resumed after step 1
        writer.write(step, {"train/loss": value})
    writer.close()
    assert read_history(path)["train/loss"] == [(1, 5.0), (2, 4.1), (3, 3.8)]
    assert len(list(iter_history(path))) == 5  # the file itself stays append-only


def test_config_hash_ignores_run_local_keys() -> None:
    base = {"model": {"d_model": 64}, "seed": 1}
    assert config_hash({**base, "paths": {"output_root": "a"}}) == config_hash({**base, "paths": {"output_root": "b"}})
    assert config_hash(base) != config_hash({**base, "seed": 2})

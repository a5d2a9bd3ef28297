"""The report never crashes on a damaged run directory (issue 19, item 13): a corrupt summary.json, a metadata.json
that is not an object, a run directory without metadata.json are each listed as "unreadable: why"."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegir.observe.aggregate import find_runs
from aegir.report import main
from tests.unit.test_report import _run


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    _run(tmp_path, "good", status="finished", seed=1, arm="full", lr=0.003, bpb=2.5)
    (_run(tmp_path, "torn_summary", status="finished", seed=2, arm="full", lr=0.003, bpb=2.7)
     / "summary.json").write_text('{"status": "finished", "objec')
    (_run(tmp_path, "list_metadata", status="finished", seed=3, arm="full", lr=0.003) / "metadata.json"
     ).write_text("[1, 2, 3]")
    (_run(tmp_path, "binary_metadata", status="finished", seed=4, arm="full", lr=0.003) / "metadata.json"
     ).write_bytes(b"\xff\xfe\x00garbage")
    (_run(tmp_path, "scalar_summary", status="finished", seed=5, arm="full", lr=0.003, bpb=2.6) / "summary.json"
     ).write_text('"finished"')
    orphan = tmp_path / "no_metadata"
    orphan.mkdir()
    (orphan / "history.jsonl").write_text('{"step": 4, "val/bpb": 3.0}\n')
    return tmp_path


def test_find_runs_lists_damaged_runs_with_the_reason(damaged: Path) -> None:
    runs = {r.path.name: r for r in find_runs([damaged])}
    assert set(runs) == {"good", "torn_summary", "list_metadata", "binary_metadata", "scalar_summary",
                         "no_metadata"}
    assert runs["good"].status == "finished"
    assert runs["torn_summary"].status.startswith("unreadable: summary.json is not valid JSON")
    assert runs["list_metadata"].status == "unreadable: metadata.json is a list, not an object"
    assert runs["binary_metadata"].status.startswith("unreadable: metadata.json is not")
    assert runs["scalar_summary"].status == "unreadable: summary.json is a str, not an object"
    assert runs["no_metadata"].status == "unreadable: no metadata.json"


@pytest.mark.parametrize("fmt", ["md", "csv"])
def test_report_shows_unreadable_runs_and_exits_0(damaged: Path, capsys, fmt: str) -> None:
    assert main([str(damaged), "--format", fmt]) == 0
    out = capsys.readouterr().out
    for name in ("torn_summary", "list_metadata", "binary_metadata", "scalar_summary", "no_metadata"):
        line = next(line for line in out.splitlines() if name in line)
        assert "unreadable: " in line, line
    assert "2.5" in out  # the good run is still reported


def test_diff_of_an_unreadable_run_is_one_line_exit_2(damaged: Path, capsys) -> None:
    assert main(["--diff", str(damaged / "good"), str(damaged / "list_metadata")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unreadable: metadata.json is a list" in err

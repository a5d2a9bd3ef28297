"""Audit sheet I/O, Spearman statistics against scipy, and the pass/fail gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from aegir.audit import AuditVerdict, audit_stats, check_audit, read_audit_sheet, write_audit_sheet
from aegir.errors import InputError

HEADER = "id,task,prompt,completion,auto_reward,human_score"

# Hand table: task "add" agrees in rank except one swap, task "sort" disagrees partly.
TABLE = [
    ("add", 0.0, 1), ("add", 0.5, 4), ("add", 1.0, 9), ("add", 0.8, 10), ("add", 0.2, 2),
    ("sort", 0.1, 3), ("sort", 0.9, 8), ("sort", 0.4, 2), ("sort", 0.6, 7),
]


def table_rows(scored: bool = True) -> list[dict]:
    return [
        {"id": f"r{i}", "task": task, "prompt": f"p{i}", "completion": f"c{i}", "auto_reward": auto,
         "human_score": score if scored else None}
        for i, (task, auto, score) in enumerate(TABLE)
    ]


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- statistics -------------------------------------------------------------------------------------------------


def test_spearman_matches_scipy_per_task_and_overall(tmp_path: Path):
    path = tmp_path / "audit.csv"
    write_audit_sheet(path, table_rows())
    stats = audit_stats(read_audit_sheet(path))
    human = np.array([s for _, _, s in TABLE], float)
    auto = np.array([a for _, a, _ in TABLE], float)
    ref = spearmanr(human, auto)
    assert stats["n_rows"] == stats["n_scored"] == 9
    assert stats["overall"]["n"] == 9
    assert stats["overall"]["rho"] == pytest.approx(ref.statistic)
    assert stats["overall"]["p"] == pytest.approx(ref.pvalue)
    # "add": ranks of auto [1,3,5,4,2], human [1,3,4,5,2]: d² = 0+0+1+1+0 = 2 -> ρ = 1 − 6·2/(5·24) = 0.9
    assert stats["per_task"]["add"]["rho"] == pytest.approx(0.9)
    sort = [(a, s) for t, a, s in TABLE if t == "sort"]
    assert stats["per_task"]["sort"]["rho"] == pytest.approx(spearmanr(*zip(*sort)).statistic)
    assert stats["per_task"]["sort"]["n"] == 4


def test_stats_use_scored_rows_only_and_explain_undefined_rho(tmp_path: Path):
    rows = table_rows()
    for r in rows[5:]:
        r["human_score"] = None  # "sort" unscored
    rows[1]["human_score"] = ""  # an empty string is unscored too
    rows.append({"id": "k1", "task": "const", "prompt": "", "completion": "", "auto_reward": 1.0, "human_score": 5})
    rows.append({"id": "k2", "task": "const", "prompt": "", "completion": "", "auto_reward": 0.0, "human_score": 5})
    rows.append({"id": "k3", "task": "const", "prompt": "", "completion": "", "auto_reward": 0.5, "human_score": 5})
    path = tmp_path / "audit.csv"
    write_audit_sheet(path, rows)
    stats = audit_stats(read_audit_sheet(path))
    assert stats["n_scored"] == 4 + 3
    assert "sort" not in stats["per_task"]
    assert stats["per_task"]["add"]["n"] == 4
    assert stats["per_task"]["const"]["rho"] is None
    assert "constant human_score" in stats["per_task"]["const"]["reason"]
    few = audit_stats(read_audit_sheet(path).iloc[:2])
    assert few["overall"]["rho"] is None and "need >= 3" in few["overall"]["reason"]


# -- the gate ---------------------------------------------------------------------------------------------------


def test_check_audit_passes_on_agreeing_scores(tmp_path: Path):
    path = tmp_path / "audit.csv"
    rows = table_rows()
    for r in rows:
        r["human_score"] = round(10 * r["auto_reward"])  # perfect rank agreement
    write_audit_sheet(path, rows)
    verdict = check_audit(path)
    assert verdict.passed and verdict.stats["overall"]["rho"] == pytest.approx(1.0)
    verdict.raise_if_failed()


def test_check_audit_missing_sheet(tmp_path: Path):
    path = tmp_path / "nope.csv"
    verdict = check_audit(path)
    assert not verdict.passed and verdict.stats is None
    assert str(path) in verdict.reason and "python -m aegir.audit +experiment=" in verdict.reason
    with pytest.raises(InputError, match="audit sheet not found"):
        verdict.raise_if_failed()


def test_check_audit_unscored_sheet(tmp_path: Path):
    path = tmp_path / "audit.csv"
    write_audit_sheet(path, table_rows(scored=False))
    verdict = check_audit(path)
    assert not verdict.passed and "fill in human_score" in verdict.reason


def test_check_audit_low_rho(tmp_path: Path):
    path = tmp_path / "audit.csv"
    rows = table_rows()
    for r in rows:
        r["human_score"] = round(10 * (1 - r["auto_reward"]))  # reversed ranks
    write_audit_sheet(path, rows)
    verdict = check_audit(path, min_rho=0.7)
    assert not verdict.passed and "rho -1.000 <= min_rho 0.70" in verdict.reason
    with pytest.raises(InputError, match="min_rho"):
        verdict.raise_if_failed()
    # ρ must be strictly above min_rho
    ref = audit_stats(read_audit_sheet(path))["overall"]["rho"]
    assert not check_audit(path, min_rho=ref).passed


def test_check_audit_not_required_passes_but_says_why(tmp_path: Path):
    verdict = check_audit(tmp_path / "nope.csv", required=False)
    assert verdict.passed and verdict.reason.startswith("audit not required:")


def test_check_audit_reports_bad_sheet(tmp_path: Path):
    path = write_lines(tmp_path / "a.csv", HEADER, "1,add,p,c,0.5,11")
    verdict = check_audit(path)
    assert not verdict.passed and verdict.reason == f"{path}:2: human_score: must be in [0, 10], got 11.0"


def test_verdict_is_one_line():
    assert AuditVerdict(False, "x: y").reason.count("\n") == 0


# -- reading: bad rows with line numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((HEADER, "1,add,p,c,0.5,3", "2,add,p,c,0.1,-1"), ":3: human_score: must be in [0, 10], got -1.0"),
        ((HEADER, "1,add,p,c,0.5,10.5"), ":2: human_score: must be in [0, 10], got 10.5"),
        ((HEADER, "1,add,p,c,0.5,great"), ":2: human_score: not a number: 'great'"),
        ((HEADER, "1,add,p,c,high,"), ":2: auto_reward: not a number: 'high'"),
        ((HEADER, "1,add,p,c,,"), ":2: auto_reward: missing value"),
        ((HEADER, "1,add,p,c,inf,"), ":2: auto_reward: must be a finite number"),
        ((HEADER, "1,add,p,c,0.5,", "2,  ,p,c,0.5,"), ":3: task: must be non-empty"),
        ((HEADER, "1,add,p,c,0.5,", "1,add,p,c,0.5,"), ":2: id: duplicate id '1'"),
        ((HEADER, "1,add,p,c,0.5"), ":2: expected 6 fields, got 5"),
        (("id,task,prompt,completion,auto_reward", "1,add,p,c,0.5"), ":1: missing column(s) ['human_score']"),
        (("",), ":1: missing column(s)"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path: Path, lines, expected):
    path = write_lines(tmp_path / "a.csv", *lines)
    with pytest.raises(InputError) as err:
        read_audit_sheet(path)
    message = str(err.value)
    assert message.startswith(f"{path}{expected}") and "\n" not in message


def test_line_numbers_count_multiline_completions(tmp_path: Path):
    path = tmp_path / "a.csv"
    rows = [
        {"id": "1", "task": "add", "prompt": "p", "completion": "line one\nline two\nline three", "auto_reward": 1.0},
        {"id": "2", "task": "add", "prompt": "p", "completion": "ok", "auto_reward": 0.0},
    ]
    write_audit_sheet(path, rows)
    text = path.read_text().replace("0.0,\n", "0.0,12\n")  # row 2 starts on physical line 5
    path.write_text(text)
    with pytest.raises(InputError, match=r"a\.csv:5: human_score: must be in \[0, 10\], got 12"):
        read_audit_sheet(path)
    path.write_text(text.replace(",12\n", ",\n"))
    df = read_audit_sheet(path)
    assert df.loc[0, "completion"] == "line one\nline two\nline three"
    assert df.attrs["lines"] == [2, 5]


# -- writing ----------------------------------------------------------------------------------------------------


def test_write_round_trip_and_columns(tmp_path: Path):
    path = tmp_path / "sub" / "audit.csv"
    write_audit_sheet(path, table_rows(scored=False))
    assert path.read_text().splitlines()[0] == HEADER
    df = read_audit_sheet(path)
    assert list(df.columns) == HEADER.split(",")
    assert df["human_score"].isna().all() and df["auto_reward"].dtype == float
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file is gone


def test_overwrite_protection(tmp_path: Path):
    path = tmp_path / "audit.csv"
    write_audit_sheet(path, table_rows(scored=False))
    write_audit_sheet(path, table_rows(scored=False))  # no scores yet: replacing is fine
    write_audit_sheet(path, table_rows(scored=True))
    before = path.read_text()
    with pytest.raises(InputError, match="already has 9 human score"):
        write_audit_sheet(path, table_rows(scored=False))
    assert path.read_text() == before
    write_audit_sheet(path, table_rows(scored=False), overwrite=True)
    assert read_audit_sheet(path)["human_score"].isna().all()


def test_hostile_completion_bytes_round_trip_through_the_sheet(tmp_path) -> None:
    """NUL, bare CR and other control bytes (what an untrained policy writes) are escaped, and the sheet reads back."""
    from aegir.audit import readable

    path = tmp_path / "sheet.csv"
    nasty = "a\x00b\rc\r\nd\x1b[31m\"quoted\", comma"
    write_audit_sheet(path, [{"id": "x", "task": "t", "prompt": "p", "completion": nasty, "auto_reward": 0.5}])
    df = read_audit_sheet(path)
    assert df.loc[0, "completion"] == readable(nasty) == "a\\x00b\\x0dc\\x0d\nd\\x1b[31m\"quoted\", comma"

"""Human audit of an automatic reward: the sheet a person scores, and the rank agreement it must reach.

Before GRPO optimises a verifiable reward hard, a person scores a sample of completions 0-10 in a CSV sheet; the
run may start only if the human scores and the automatic rewards agree in rank (Spearman ρ > ``min_rho``).
A reward that disagrees with people gets optimised into reward hacking, so this is a gate, not a report.

Sheet format (``write_audit_sheet``): CSV with the columns ``id, task, prompt, completion, auto_reward,
human_score``; ``human_score`` is left empty for the person to fill with a number in [0, 10] (rows left empty are
simply unscored). Completions may contain newlines (quoted CSV), so "line" in error messages is the physical line
where the record starts, 1-based with the header on line 1 -- what an editor shows.

This module holds the math, the sheet I/O and the command; it imports no torch (the completions come from
``aegir.audit_generate``), and pandera/scipy only when used, so the trainer can call ``require_passing_audit``
before any heavy work.

Command (the same Hydra overrides as ``run.py``)::

    python -m aegir.audit +experiment=v42 audit.checkpoint=<SFT best.ckpt>   # 1. write the sheet
    #   2. fill in human_score (0-10) for every row
    python -m aegir.audit +experiment=v42                                     # 3. Spearman rho per task + verdict
    python run.py +experiment=v42 audit.required=true                          # 4. trains only if rho > min_rho

Exit status: 0 sheet written or audit passed, 2 bad input, 3 the scored sheet fails ``audit.min_rho``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import sys
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.errors import HydraException

from aegir import hydra_resolvers
from aegir.cli import format_config_error
from aegir.errors import InputError
from aegir.exit_status import FINISHED, GATE_FAILED, exit_status
from aegir.run.compose import compose_config

COLUMNS: tuple[str, ...] = ("id", "task", "prompt", "completion", "auto_reward", "human_score")
SCORE_MIN, SCORE_MAX = 0.0, 10.0
MIN_SCORED_FOR_RHO = 3
AUDIT_COMMAND = "python -m aegir.audit +experiment=<name>"
log = logging.getLogger("aegir")


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def write_audit_sheet(path: Path, rows: Sequence[Mapping[str, Any]], overwrite: bool = False) -> None:
    """Write the sheet atomically (temp file + rename); never clobber a sheet someone has started scoring.

    Each row needs ``id, task, prompt, completion, auto_reward``; ``human_score`` is optional (written empty when
    missing or None). An existing sheet with any filled ``human_score`` -- or one that cannot be read, since it
    may hold scores -- is only replaced with ``overwrite=True``; otherwise ``InputError``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        scored = _count_existing_scores(path)
        if scored:
            raise InputError(
                f"{path}: already has {scored} human score(s); refusing to overwrite "
                "(pass overwrite=True to replace it)"
            )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, row in enumerate(rows):
        missing = [c for c in COLUMNS[:-1] if c not in row]
        if missing:
            raise ValueError(f"audit row {i}: missing key(s) {missing}")
        reward = float(row["auto_reward"])
        if not math.isfinite(reward):
            raise ValueError(f"audit row {i} (id {row['id']!r}): auto_reward must be finite, got {reward}")
        score = row.get("human_score")
        writer.writerow([row["id"], row["task"], readable(str(row["prompt"])), readable(str(row["completion"])),
                         repr(reward),
                         "" if score is None else score])
    _write_text_atomic(path, buffer.getvalue())


def readable(text: str) -> str:
    """Control characters other than newline and tab as `\\xNN` escapes: model output is arbitrary bytes, and a NUL
    or a bare carriage return in a cell is invisible to the person scoring it and trips CSV tools."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else f"\\x{ord(c):02x}" for c in text)


def _count_existing_scores(path: Path) -> int:
    """Non-empty ``human_score`` cells in an existing sheet; an unreadable file counts as scored (play safe)."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 1
    return sum(1 for r in records if (r.get("human_score") or "").strip())


def _write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory and a rename, so readers never see half a sheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------------------
# Reading and validation
# --------------------------------------------------------------------------------------------------------------


def read_audit_sheet(path: Path) -> pd.DataFrame:
    """Read and validate a sheet; ``auto_reward`` and ``human_score`` come back as float (NaN = unscored).

    Validation is a pandera schema: all columns present (extra columns are kept), ``id`` non-empty and unique,
    ``task`` non-empty, ``auto_reward`` a finite number, ``human_score`` empty or a number in [0, 10]. The first
    problem (by line, then column order) raises ``InputError("path:line: column: problem")``. The frame carries
    the CSV line of each row in ``df.attrs["lines"]``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: audit sheet not found")
    header, records, lines = _read_csv_records(path)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1: missing column(s) {missing}; expected {list(COLUMNS)}")
    raw = pd.DataFrame(records, columns=header, dtype=object)
    for col in ("auto_reward", "human_score"):
        raw[col] = raw[col].map(lambda s: np.nan if not str(s).strip() else str(s).strip())
    df = _validate(raw, path, lines)
    df.attrs["lines"] = lines
    return df


def _read_csv_records(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, records and each record's starting line; a ragged or empty sheet is an ``InputError``."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:  # keep \r inside quoted cells as written
            text = fh.read()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}:1: empty sheet; expected the header {','.join(COLUMNS)}")
        header = [h.strip() for h in header]
        records: list[list[str]] = []
        lines: list[int] = []
        last_line = reader.line_num
        for record in reader:
            start, last_line = last_line + 1, reader.line_num
            if not record:  # blank line
                continue
            if len(record) != len(header):
                raise InputError(f"{path}:{start}: expected {len(header)} fields, got {len(record)}")
            records.append(record)
            lines.append(start)
    except csv.Error as err:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None
    return header, records, lines


def _schema() -> Any:
    """The sheet's pandera schema (built lazily: pandera is only needed when a sheet is read)."""
    import pandera.pandas as pa

    def non_empty(s: pd.Series) -> pd.Series:
        return s.astype(str).str.strip().str.len() > 0

    return pa.DataFrameSchema(
        {
            "id": pa.Column(str, pa.Check(non_empty, error="must be non-empty"), unique=True),
            "task": pa.Column(str, pa.Check(non_empty, error="must be non-empty")),
            "prompt": pa.Column(str),
            "completion": pa.Column(str),
            "auto_reward": pa.Column(float, pa.Check(np.isfinite, error="must be a finite number"), coerce=True),
            "human_score": pa.Column(
                float, pa.Check.in_range(SCORE_MIN, SCORE_MAX, error="must be in [0, 10]"), nullable=True, coerce=True
            ),
        },
        strict=False,
    )


def _validate(raw: pd.DataFrame, path: Path, lines: list[int]) -> pd.DataFrame:
    """Run the schema; turn its first failure case into one ``path:line: column: problem`` line."""
    import pandera.errors

    try:
        return _schema().validate(raw, lazy=True)
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
        cases = cases[cases["index"].notna()].copy()
        if cases.empty:  # pragma: no cover - every check above reports row indices
            raise InputError(f"{path}: invalid audit sheet ({err.args[0].splitlines()[0]})") from None
        cases["row"] = cases["index"].astype(int)
        cases["col_order"] = cases["column"].map(lambda c: COLUMNS.index(c) if c in COLUMNS else len(COLUMNS))
        first = cases.sort_values(["row", "col_order"], kind="stable").iloc[0]
        problem = _describe(str(first["check"]), first["failure_case"], str(first["column"]))
        raise InputError(f"{path}:{lines[first['row']]}: {first['column']}: {problem}") from None


def _describe(check: str, value: Any, column: str) -> str:
    """A pandera check name and failing value, in words."""
    if check.startswith("coerce_dtype") or check.startswith("dtype"):
        return f"not a number: {value!r}"
    if check == "not_nullable":
        return "missing value"
    if check == "field_uniqueness":
        return f"duplicate {column} {value!r}"
    if check == "must be in [0, 10]":
        return f"must be in [0, 10], got {value}"
    return f"{check}, got {value!r}"


# --------------------------------------------------------------------------------------------------------------
# Statistics and the gate
# --------------------------------------------------------------------------------------------------------------


def audit_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Spearman ρ (and its p-value) between ``human_score`` and ``auto_reward``, overall and per task.

    Only scored rows (``human_score`` not NaN) count. Returns ``{"n_rows", "n_scored", "overall", "per_task"}``
    where each entry is ``{"n", "rho", "p", "reason"}``; ``rho``/``p`` are None, and ``reason`` says why, when
    there are fewer than 3 scored rows or either column is constant (ρ is undefined there).
    """
    scored = df[df["human_score"].notna()]
    per_task = {
        str(task): _spearman(group["human_score"].to_numpy(float), group["auto_reward"].to_numpy(float))
        for task, group in scored.groupby("task", sort=True)
    }
    return {
        "n_rows": int(len(df)),
        "n_scored": int(len(scored)),
        "overall": _spearman(scored["human_score"].to_numpy(float), scored["auto_reward"].to_numpy(float)),
        "per_task": per_task,
    }


def _spearman(human: np.ndarray, auto: np.ndarray) -> dict[str, Any]:
    from scipy.stats import spearmanr

    n = int(human.size)
    if n < MIN_SCORED_FOR_RHO:
        return {"n": n, "rho": None, "p": None, "reason": f"only {n} scored row(s), need >= {MIN_SCORED_FOR_RHO}"}
    constant = [name for name, v in (("human_score", human), ("auto_reward", auto)) if np.all(v == v[0])]
    if constant:
        reason = f"constant {' and '.join(constant)}: rank correlation undefined"
        return {"n": n, "rho": None, "p": None, "reason": reason}
    result = spearmanr(human, auto)
    return {"n": n, "rho": float(result.statistic), "p": float(result.pvalue), "reason": None}


@dataclass(frozen=True)
class AuditVerdict:
    """Whether the reward passed its human audit, why (one line), and the statistics behind it (if computed)."""

    passed: bool
    reason: str
    stats: dict[str, Any] | None = field(default=None)

    def raise_if_failed(self) -> None:
        """Raise ``InputError(reason)`` if the audit failed (a run with ``audit.required=true`` calls this first)."""
        if not self.passed:
            raise InputError(self.reason)


def check_audit(path: Path, min_rho: float = 0.70, required: bool = True) -> AuditVerdict:
    """Judge the sheet at ``path``: passed iff it exists, is valid, is scored and overall ρ > ``min_rho``.

    With ``required=False`` the verdict always passes, but ``reason`` still states what would have failed
    ("audit not required: ..."), so the run can log it.
    """
    path = Path(path)
    verdict = _judge(path, min_rho)
    if required or verdict.passed:
        return verdict
    return AuditVerdict(True, f"audit not required: {verdict.reason}", verdict.stats)


def _judge(path: Path, min_rho: float) -> AuditVerdict:
    if not path.is_file():
        return AuditVerdict(
            False,
            f"{path}: audit sheet not found; create it with `{AUDIT_COMMAND}`, then fill in human_score (0-10)",
        )
    try:
        df = read_audit_sheet(path)
    except InputError as err:
        return AuditVerdict(False, str(err))
    stats = audit_stats(df)
    if stats["n_scored"] == 0:
        return AuditVerdict(
            False, f"{path}: no human scores yet; fill in human_score (0-10) for the {stats['n_rows']} row(s)", stats
        )
    overall = stats["overall"]
    if overall["rho"] is None:
        return AuditVerdict(False, f"{path}: overall Spearman rho undefined ({overall['reason']})", stats)
    if overall["rho"] <= min_rho:
        return AuditVerdict(
            False,
            f"{path}: overall Spearman rho {overall['rho']:.3f} <= min_rho {min_rho:.2f} "
            f"(n={overall['n']}); the automatic reward disagrees with human scores",
            stats,
        )
    return AuditVerdict(
        True, f"{path}: overall Spearman rho {overall['rho']:.3f} > {min_rho:.2f} (n={overall['n']})", stats
    )


def sheet_path(cfg: Any) -> Path:
    """`audit.sheet`, or the default <output_root>/audit/<name>_data<data_seed>.csv shared by the CLI and the gate."""
    if cfg.audit.sheet:
        return Path(str(cfg.audit.sheet))
    return Path(str(cfg.paths.output_root)) / "audit" / f"{cfg.name}_data{cfg.data_seed}.csv"


def require_passing_audit(cfg: Any) -> None:
    """The gate a run with `audit.required=true` passes before any training: a reward that disagrees with people
    is not worth optimising, so a missing, unscored or disagreeing sheet is an InputError."""
    verdict = check_audit(sheet_path(cfg), float(cfg.audit.min_rho), required=True)
    if not verdict.passed:
        raise InputError(f"audit.required: refusing to train: {verdict.reason}")
    log.info("reward audit: %s", verdict.reason)


# --------------------------------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------------------------------


def format_stats(stats: Mapping[str, Any]) -> str:
    """Spearman rho / p / n per task and overall, as a markdown table."""
    lines = ["| Task | n scored | Spearman rho | p |", "| --- | --- | --- | --- |"]
    entries = [*sorted(stats["per_task"].items()), ("overall", stats["overall"])]
    for task, entry in entries:
        if entry["rho"] is None:
            lines.append(f"| {task} | {entry['n']} | undefined ({entry['reason']}) | |")
        else:
            lines.append(f"| {task} | {entry['n']} | {entry['rho']:.3f} | {entry['p']:.3g} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the audit sheet, or judge it once it holds human scores (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return FINISHED
    try:
        # Imported here, not at the top: the config schema and the generator import torch, which the sheet math
        # above and the training run's audit gate (`require_passing_audit`) do not need.
        from aegir.audit_generate import generate_audit_rows, rl_stage_config
        from aegir.config import validate

        hydra_resolvers.register()
        try:
            cfg = validate(compose_config(args))
        except HydraException as err:
            raise InputError(format_config_error(err)) from None
        path = sheet_path(cfg)
        if path.is_file() and _count_existing_scores(path) and not cfg.audit.overwrite:
            verdict = check_audit(path, float(cfg.audit.min_rho), required=True)
            if verdict.stats is not None:
                print(format_stats(verdict.stats))
            print(("PASSED: " if verdict.passed else "FAILED: ") + verdict.reason)
            return FINISHED if verdict.passed else GATE_FAILED
        stage, stage_cfg = rl_stage_config(cfg, args)
        checkpoint = cfg.audit.checkpoint or stage_cfg.model.pretrained
        if checkpoint is None:
            print("aegir.audit: no audit.checkpoint or model.pretrained: auditing the untrained policy; for a "
                  "warm-started experiment pass audit.checkpoint=<the SFT stage's best.ckpt>", file=sys.stderr)
        rows = generate_audit_rows(stage_cfg, None if checkpoint is None else str(checkpoint))
        write_audit_sheet(path, rows, overwrite=bool(cfg.audit.overwrite))
    except InputError as err:
        print(f"aegir.audit: {err}", file=sys.stderr)
        return exit_status(err)
    tasks = sorted({r["task"] for r in rows})
    print(f"wrote {len(rows)} completions ({', '.join(tasks)}; stage {stage or 'the run'}, temperature "
          f"{cfg.audit.temperature}) to {path}")
    print("next: fill in human_score (0-10) for every row, then run this command again to compute Spearman rho")
    return FINISHED


if __name__ == "__main__":
    sys.exit(main())

"""The run directory contract (docs/run_directory.md): file names, atomic JSON writes, provenance, the history log.

Reports, sweeps and the observatory read runs *only* through this module's files, so it has no training imports:

    <run dir>/.hydra/            Hydra's config.yaml, overrides.yaml, hydra.yaml
    <run dir>/metadata.json      provenance; status running | finished | failed (+ reason)
    <run dir>/summary.json       objective, final metrics (mean, n, CI where they are means), gate verdicts
    <run dir>/history.jsonl      append-only: {"step": int, "time": float, "<metric>": value, ...} per line
    <run dir>/tb/                TensorBoard events
    <run dir>/checkpoints/       last.ckpt, best.ckpt
    <run dir>/samples/           generated completions (jsonl)
    <run dir>/stages/<k>_<name>/ one sub-run per stage of a multi-stage experiment, same layout
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator

METADATA = "metadata.json"
SUMMARY = "summary.json"
HISTORY = "history.jsonl"
TB_DIR = "tb"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
STAGES = "stages"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"

_TRACKED_PACKAGES = ("aegir", "torch", "lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy", "scipy",
                     "optuna", "tensorboard", "pandera", "flash-linear-attention")


@dataclass(frozen=True)
class RunPaths:
    """Every path of one run directory."""

    root: Path

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def history(self) -> Path:
        return self.root / HISTORY

    @property
    def tb(self) -> Path:
        return self.root / TB_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / LAST_CKPT

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / BEST_CKPT

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    def stage(self, index: int, name: str) -> "RunPaths":
        return RunPaths(self.root / STAGES / f"{index}_{name}")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_finite(data), fh, indent=2, sort_keys=False, default=_json_default)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in `path`, None), or (None, why it cannot be read) -- never an exception."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, f"{path.name} is not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"{path.name} is not valid JSON (line {err.lineno}: {err.msg})"
    except OSError as err:
        return None, f"{path.name} cannot be read ({err.strerror or err})"
    if not isinstance(value, dict):
        return None, f"{path.name} is a {type(value).__name__}, not an object"
    return value, None


def update_json(path: Path, **fields: Any) -> dict[str, Any]:
    data = read_json(path) if path.exists() else {}
    data.update(fields)
    write_json_atomic(path, data)
    return data


# --------------------------------------------------------------------------------------------------- history
class HistoryWriter:
    """Append-only JSON-lines log of scalars. Each record is written with one write() and flushed, so a process
    killed mid-write leaves at most one torn final line, which `read_history` skips."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # A torn last line from a killed process: start a fresh line rather than gluing a record onto it.
        needs_newline = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        self._fh = open(path, "a", encoding="utf-8")
        if needs_newline:
            self._fh.write("\n")
            self._fh.flush()

    def write(self, step: int, metrics: dict[str, float], **extra: Any) -> None:
        record = {"step": int(step), "time": time.time(), **extra,
                  **{k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}}
        self._fh.write(json.dumps(record, default=_json_default) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def iter_history(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a history file, skipping lines that do not parse (a torn write of a killed process)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "step" in record:
                yield record


def read_history(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Per metric, its (step, value) series sorted by step. A step logged twice (a resumed run re-logs the steps
    after its last checkpoint) keeps the later record, i.e. the one of the run that went on to finish."""
    series: dict[str, dict[int, float]] = {}
    for record in iter_history(path):
        step = int(record["step"])
        for key, value in record.items():
            if key in ("step", "time", "event") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            series.setdefault(key, {})[step] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


# --------------------------------------------------------------------------------------------------- provenance
def sha256_bytes(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Keys that say where or how a run ran, not what it computes.
RUN_LOCAL_KEYS = ("hydra", "paths", "resume")
# ...plus the keys that differ between seed replicates of one configuration.
REPLICATE_LOCAL_KEYS = (*RUN_LOCAL_KEYS, "seed", "notes", "tags")


def config_hash(resolved_config: dict[str, Any], exclude: tuple[str, ...] = RUN_LOCAL_KEYS) -> str:
    """Hash of the resolved config without run-local keys, so two runs of one configuration and seed share it."""
    stable = {k: v for k, v in resolved_config.items() if k not in exclude}
    return sha256_bytes(json.dumps(stable, sort_keys=True, default=str).encode())[:16]


def replicate_key(resolved_config: dict[str, Any]) -> str:
    """Hash shared by every seed replicate of one configuration (seed aggregation, HParams groups)."""
    return config_hash(resolved_config, exclude=REPLICATE_LOCAL_KEYS)


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the code that ran; null outside a git checkout."""
    cwd = cwd or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count(), "python_executable": sys.executable}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # hardware probing must never fail a run
        info["cuda_devices"] = []
    return info

"""A rejected resume changes nothing in the run directory; checkpoints are read with weights_only=True and written
atomically, so a planted, truncated or half-written checkpoint never runs code or costs the previous one."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aegir.errors import InputError
from aegir.run.atomic_io import AtomicCheckpointIO
from aegir.run.checkpoints import check_resumable
from tests.conftest import FAST, run_cli


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _resume(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aegir.resume", str(run_dir), *extra], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume_safety")
    result = run_cli([*FAST, "logger=none", f"hydra.run.dir={root / 'run'}"], cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "run" / "checkpoints" / "last.ckpt").is_file()
    return root / "run"


@pytest.mark.slow
@pytest.mark.parametrize("extra,fragment", [
    (["trainer.max_steps=abc"], "trainer.max_steps"),
    (["algo.lr=-1"], "config error: algo.lr: must be > 0"),
    (["+trainer.max_stepz=3"], "trainer.max_stepz: unknown key"),
])
def test_a_rejected_resume_changes_nothing(finished_run: Path, extra: list[str], fragment: str) -> None:
    before = _snapshot(finished_run)
    result = _resume(finished_run, *extra)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0
    assert _snapshot(finished_run) == before


@pytest.mark.slow
def test_a_run_without_metadata_is_refused_and_keeps_its_hydra_dir(finished_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(finished_run), str(copy)], check=True)
    (copy / "metadata.json").unlink()
    before = _snapshot(copy)
    result = _resume(copy)
    assert result.returncode == 2 and "never started" in result.stderr
    assert _snapshot(copy) == before and (copy / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow
def test_a_truncated_last_checkpoint_is_one_line_and_changes_nothing(finished_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(finished_run), str(copy)], check=True)
    last = copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = _snapshot(copy)
    result = _resume(copy)
    assert result.returncode == 2 and "is corrupt or unsafe to load" in result.stderr, result.stderr[-2000:]
    assert "the best checkpoint is" in result.stderr and result.stderr.strip().count("\n") == 0
    assert _snapshot(copy) == before


class _Planted:
    """An object whose unpickling would run code (writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_planted_checkpoint_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _Planted(marker)}, path)
    with pytest.raises(InputError, match="is corrupt or unsafe to load"):
        check_resumable(path)
    assert not marker.exists()


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            raise pickle.PicklingError("cannot pickle this")

    with pytest.raises(Exception):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "bad": Unpicklable()}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    check_resumable(path)  # still a complete, safe checkpoint

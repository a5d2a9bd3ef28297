"""Shared fixtures: compose real configs from conf/ and run them cheaply under a temporary output root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from aegir.main import compose_config

ROOT = Path(__file__).resolve().parents[1]

# Settings that make a real run take seconds: a nano model, few steps, no progress bar, small corpus.
FAST = [
    "trainer.max_steps=12", "trainer.val_check_interval=4", "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false", "task.data.n_documents=120", "task.seq_len=64", "task.batch_size=4",
    "task.val_windows=8", "task.val_batch_size=8", "model.d_model=64", "model.n_layers=2", "model.head_size=32",
    "algo.warmup_steps=2",
]


@pytest.fixture(autouse=True)
def _clear_hydra() -> None:
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def compose(tmp_path: Path):
    """compose(overrides) -> config with outputs under tmp_path."""

    def _compose(overrides: Sequence[str] = (), fast: bool = True) -> DictConfig:
        return compose_config([*(FAST if fast else []), f"paths.output_root={tmp_path / 'outputs'}", *overrides])

    return _compose


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """`python run.py ARGS` as a user runs it, from `cwd`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)

"""Shared fixtures: compose real configs from conf/ and run them cheaply under a temporary output root."""

from __future__ import annotations

import os

# Nothing is ever downloaded in tests: huggingface_hub reads this once, at import, so it is set before anything
# imports transformers (a missing model then fails at once instead of after ~45 s of retries).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from aegir.run.compose import compose_config

ROOT = Path(__file__).resolve().parents[1]

# Settings that make a real run take seconds: a nano model, few steps, no progress bar, small corpus.
FAST = [
    "trainer.max_steps=12", "trainer.val_check_interval=4", "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false", "task.data.n_documents=120", "task.seq_len=64", "task.batch_size=4",
    "task.val_windows=8", "task.val_batch_size=8", "task.eval_windows=4", "task.probe_items=2", "model.d_model=64",
    "model.n_layers=2", "model.head_size=32", "algo.warmup_steps=2",
]


@pytest.fixture(scope="session")
def hf_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny local Qwen3 model (aegir.models.hf_tiny), built once per test session."""
    from aegir.models.hf_tiny import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("hf") / "tiny_qwen3")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for tests of tiny models (op overhead, not FLOPs; H-Net decoding is hundreds of tiny ops
    per byte): thread hand-offs made such tests 10-40x slower on a busy 2-core machine. Restores the setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


def run_cli_and_kill(args: Sequence[str], run_dir: Path, metric: str, min_step: int, cwd: Path,
                     timeout: float = 600) -> int:
    """Start `run.py ARGS hydra.run.dir=run_dir` and SIGKILL it once a checkpoint exists and `metric` was logged
    at `min_step` or later, i.e. mid-way through training. Returns the process's exit status (-9 when killed)."""
    from aegir.rundir import read_history

    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            series = read_history(run_dir / "history.jsonl").get(metric, [])
            if (run_dir / "checkpoints" / "last.ckpt").exists() and series and series[-1][0] >= min_step:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.wait(timeout=60)
    return proc.returncode


def band_charts(tb_dir: Path) -> dict[str, dict[str, tuple[str, str, str]]]:
    """A run's Custom Scalars layout read back: {category: {chart title: (value, lower, upper) tags}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    events = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0})
    events.Reload()
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    return {cat.title: {c.title: (c.margin.series[0].value, c.margin.series[0].lower, c.margin.series[0].upper)
                        for c in cat.chart} for cat in layout.category}


def assert_banded(history: dict[str, list[tuple[int, float]]], metric: str) -> None:
    """`metric` logged between its `/lower` and `/upper` bounds at every evaluation."""
    lower, upper = history[f"{metric}/lower"], history[f"{metric}/upper"]
    assert [s for s, _ in lower] == [s for s, _ in upper] == [s for s, _ in history[metric]]
    assert all(lo <= mid <= hi for (_, lo), (_, mid), (_, hi) in zip(lower, history[metric], upper))


def tables_data(**overrides: Any) -> dict[str, Any]:
    """A complete `task.data` section of the CTA/CPA loader: conf/task/cta.yaml's keys with the GPU-sized budgets
    the tables tests were written for (those pretraining's `source=tables` uses), plus `overrides`."""
    from aegir.config import group_defaults
    from aegir.tasks.pretrain.tables_source import PRETRAIN_BUDGETS

    return {**group_defaults("task", "cta")["data"], **PRETRAIN_BUDGETS, **overrides}

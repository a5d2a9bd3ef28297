"""Reward workers die with the training process: a SIGKILLed trainer (a killed run, a preempted job) leaves no
worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHILD = textwrap.dedent("""
    import time
    from aegir.rl.rewards import _WorkerPool
    pool = _WorkerPool(2, 1.0, "fork", None)
    print(" ".join(str(w.process.pid) for w in pool._workers), flush=True)
    time.sleep(120)
""")


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's prctl")
def test_workers_exit_when_the_trainer_is_killed() -> None:
    trainer = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert trainer.stdout is not None
    workers = [int(pid) for pid in trainer.stdout.readline().split()]
    assert len(workers) == 2 and all(_running(pid) for pid in workers)
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait()
    deadline = time.monotonic() + 10.0
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if _running(pid)]
    for pid in left:  # do not leak them into the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert left == []

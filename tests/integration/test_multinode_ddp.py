"""Multi-node DDP simulated on one machine (issue 19, item 15): two "nodes" of one process each, launched by
torchrun with --nnodes 2 --node_rank {0,1} --master_addr 127.0.0.1 over gloo -- the README's "More than one
machine" commands with CPU settings -- train a short pretraining and a short GRPO run into one run directory, and
the two ranks end with identical parameters."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aegir.rundir import read_history, read_json
from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow
NODES = ["trainer=ddp_sim", "trainer.strategy=ddp", "trainer.devices=1", "trainer.num_nodes=2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _two_nodes(run_dir: Path, overrides: list[str], cwd: Path) -> None:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--node_rank",
         str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port), str(ROOT / "run.py"), *overrides,
         *NODES, f"hydra.run.dir={run_dir}", f"paths.output_root={cwd / 'out'}"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    for rank, node in enumerate(nodes):
        out, _ = node.communicate(timeout=600)
        assert node.returncode == 0, f"node {rank}:\n{out[-3000:]}"


@pytest.mark.parametrize("name,overrides", [
    ("pretrain", [*FAST, "trainer.max_steps=8"]),
    ("grpo", ["+experiment=grpo_toy", "trainer.max_steps=2", "trainer.val_check_interval=2"]),
])
def test_two_torchrun_nodes_train_in_sync(tmp_path: Path, name: str, overrides: list[str]) -> None:
    run_dir = tmp_path / name
    _two_nodes(run_dir, overrides, tmp_path)
    meta = read_json(run_dir / "metadata.json")
    assert meta["status"] == "finished"
    assert meta["config"]["trainer"]["num_nodes"] == 2
    steps = int(read_json(run_dir / "summary.json")["steps"])
    assert read_history(run_dir / "history.jsonl")["ddp/param_max_abs_diff"] == [(steps, 0.0)]
    assert sorted(p.name for p in (tmp_path / "out").glob("runs/*/*")) == []  # no stray per-node run directory

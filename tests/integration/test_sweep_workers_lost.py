"""A sweep worker killed mid-trial loses nothing (issue 19, items 11 and 14): on a journal file (two workers, one
killed, then a restart) and on a real PostgreSQL server (three workers, one killed), the grid ends with every point
COMPLETE, no trial left RUNNING, the lost trial FAIL and its run directory `failed`."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import optuna
import pytest

from aegir.rundir import read_json
from aegir.sweep_lease import LEASE_ATTR
from tests.conftest import FAST, ROOT
from tests.integration.test_sweep import _spec

pytestmark = pytest.mark.slow
POINTS = {(1.0e-9, 1), (1.0e-9, 2), (0.003, 1), (0.003, 2)}


def _worker(spec: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "aegir.sweep", str(spec)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_a_worker_mid_trial(storage: optuna.storages.BaseStorage, workers: list[subprocess.Popen[str]]) -> int:
    """SIGKILL the first worker seen running a trial; returns that trial's number."""
    pids = {w.pid: w for w in workers}
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name="lost", storage=storage)
        except KeyError:  # not created yet
            time.sleep(0.5)
            continue
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            lease = trial.user_attrs.get(LEASE_ATTR) or {}
            run_dir = Path(trial.user_attrs.get("run_dir", "/nonexistent"))
            if lease.get("pid") in pids and (run_dir / "metadata.json").is_file():  # mid-trial: the run started
                pids[lease["pid"]].send_signal(signal.SIGKILL)
                pids[lease["pid"]].wait()
                return trial.number
        time.sleep(0.3)
    raise AssertionError("no worker was seen running a trial")


def _finish(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        assert worker.returncode in (0, -signal.SIGKILL), out[-3000:]


def _check_grid(storage: optuna.storages.BaseStorage, killed: int) -> None:
    trials = optuna.load_study(study_name="lost", storage=storage).get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state in (optuna.trial.TrialState.RUNNING,
                                                      optuna.trial.TrialState.WAITING)]
    complete = {(t.params["algo.lr"], t.params["seed"]) for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert complete == POINTS  # no point lost
    lost = trials[killed]
    assert lost.state == optuna.trial.TrialState.FAIL
    rerun = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(rerun) == 1 and rerun[0].params == lost.params and rerun[0].state == optuna.trial.TrialState.COMPLETE
    meta = read_json(Path(lost.user_attrs["run_dir"]) / "metadata.json")
    assert meta["status"] == "failed" and meta["reason"].startswith("WorkerLost: worker pid "), meta


def test_journal_worker_killed_mid_trial_then_restart(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    spec = _spec(tmp_path, "lost", storage=f"journal:{journal}",
                 base=[*FAST, "logger=none", "trainer.max_steps=4"])
    workers = [_worker(spec) for _ in range(2)]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    killed = _kill_a_worker_mid_trial(storage, workers)
    _finish(workers)
    restart = _worker(spec)  # the restart recovers the lost trial if the live worker had not already
    _finish([restart])
    _check_grid(storage, killed)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server (Debian's `postgresql` package) on a Unix socket, for the test's lifetime."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        pytest.skip("PostgreSQL server binaries not installed (Debian package `postgresql`; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install -e '.[postgres]')")
    bindir = Path(binaries[-1])
    root = Path(tempfile.mkdtemp(prefix="aegir-pg-"))
    os.chmod(root, 0o755)
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", 54000 + os.getpid() % 1000

    def pg(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
           f"-k {root} -p {port} -c listen_addresses=''", "start")
        pg(str(bindir / "createdb"), "-h", str(root), "-p", str(port), "-U", "postgres", "aegir")
        yield f"postgresql+psycopg://postgres@/aegir?host={root}&port={port}"
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_three_workers_one_killed(tmp_path: Path, postgres_url: str) -> None:
    spec = _spec(tmp_path, "lost", storage=postgres_url, base=[*FAST, "logger=none", "trainer.max_steps=4"])
    workers = [_worker(spec) for _ in range(3)]
    storage = optuna.storages.RDBStorage(postgres_url)
    killed = _kill_a_worker_mid_trial(storage, workers)
    _finish(workers)  # the two live workers recover the lost trial after their own trials: no restart needed
    _check_grid(storage, killed)

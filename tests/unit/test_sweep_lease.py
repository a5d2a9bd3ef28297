"""Stale trials of killed sweep workers (issue 19, item 11): the staleness rule's oracle, and recovery on a real
journal-file study -- the lost trial is failed, its run directory too, and its grid point re-queued."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import optuna
import pytest

from aegir.sweep_lease import (BEAT_ATTR, LEASE_ATTR, MAX_RETRIES, process_started, recover_stale_trials,
                               retried_numbers, stale_reason, this_worker)

HOST = socket.gethostname()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_reason_oracle() -> None:
    me, dead = this_worker(), _dead_pid()
    now = 10_000.0
    assert stale_reason(me, now, now - 5, now, HOST) is None  # this very process: alive
    assert stale_reason({**me, "pid": dead}, now, now, now, HOST) == f"worker pid {dead} on {HOST} is gone"
    reused = {**me, "started": "1"}  # the pid lives but is another process than the one that took the trial
    assert stale_reason(reused, now, now, now, HOST) == f"worker pid {me['pid']} on {HOST} is gone"
    other = {"host": "node7", "pid": 12, "started": "99"}
    assert stale_reason(other, now - 60, now - 500, now, HOST, grace_s=120) is None  # a recent beat
    assert stale_reason(other, now - 121, now - 500, now, HOST, grace_s=120) == (
        "worker pid 12 on node7 sent no heartbeat for 121 s")
    assert stale_reason(None, None, now - 300, now, HOST, grace_s=120) == "its worker sent no heartbeat for 300 s"
    assert stale_reason(None, None, now - 30, now, HOST, grace_s=120) is None


def test_process_started_identifies_a_process() -> None:
    assert process_started(os.getpid()) == process_started(os.getpid()) is not None
    assert process_started(_dead_pid()) is None


def _study(tmp_path: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    sampler = optuna.samplers.GridSampler({"x": [1, 2]}, seed=0)
    return optuna.create_study(study_name="s", storage=storage, sampler=sampler, load_if_exists=True)


def test_a_lost_trial_is_failed_its_run_marked_and_its_point_rerun(tmp_path: Path) -> None:
    study = _study(tmp_path)
    lost = study.ask()
    x = lost.suggest_categorical("x", [1, 2])
    run_dir = tmp_path / "trials" / "0000_s"
    run_dir.mkdir(parents=True)
    (run_dir / "metadata.json").write_text(json.dumps({"status": "running"}))
    lost.set_user_attr("run_dir", str(run_dir))
    lost.set_user_attr(LEASE_ATTR, {**this_worker(), "pid": _dead_pid()})
    lost.set_user_attr(BEAT_ATTR, 0.0)
    live = study.ask()  # a trial of a live worker (this process) is left alone
    live.set_user_attr(LEASE_ATTR, this_worker())

    recovered = recover_stale_trials(study)
    assert [number for number, _ in recovered] == [lost.number]
    trials = study.get_trials(deepcopy=False)
    assert trials[lost.number].state == optuna.trial.TrialState.FAIL
    assert trials[live.number].state == optuna.trial.TrialState.RUNNING
    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].params == {"x": x}
    assert waiting[0].system_attrs["grid_id"] == trials[lost.number].system_attrs["grid_id"]
    assert LEASE_ATTR not in waiting[0].user_attrs and "run_dir" not in waiting[0].user_attrs
    assert retried_numbers(trials) == {lost.number}
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "failed" and meta["reason"].startswith("WorkerLost: worker pid ")
    assert recover_stale_trials(study) == []  # nothing left to recover: no double re-queue

    study._storage.set_trial_state_values(live._trial_id, optuna.trial.TrialState.COMPLETE, [0.5])  # (no sampler)
    study.optimize(lambda trial: float(trial.suggest_categorical("x", [1, 2])), n_trials=1)
    rerun = study.get_trials(deepcopy=False)[waiting[0].number]
    assert rerun.state == optuna.trial.TrialState.COMPLETE and rerun.params == {"x": x}


def test_a_point_is_requeued_at_most_max_retries_times(tmp_path: Path) -> None:
    study = _study(tmp_path)
    for _ in range(MAX_RETRIES + 1):
        trial = study.ask() if not study.get_trials(states=(optuna.trial.TrialState.WAITING,)) else study.ask()
        trial.suggest_categorical("x", [1, 2])
        trial.set_user_attr(LEASE_ATTR, {**this_worker(), "pid": _dead_pid()})
        recover_stale_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.FAIL) == MAX_RETRIES + 1
    assert states.count(optuna.trial.TrialState.WAITING) == 0


@pytest.mark.parametrize("lease", [None, {"host": HOST, "pid": "x"}])
def test_malformed_lease_falls_back_to_the_heartbeat_age(lease) -> None:
    assert stale_reason(lease, None, 0.0, 1_000.0, HOST, grace_s=120) is not None

"""Trials of a killed sweep worker: detect them, mark them failed, and put their point back in the queue.

A worker killed mid-trial (SIGKILL, OOM, a lost machine) leaves its trial RUNNING forever: the journal storage has
no heartbeat at all, and with a grid the sampler counts a RUNNING point as taken, so no one re-runs it. Every trial
therefore carries a **lease** in its user attributes: the worker's host, pid and process start time, and a beat
(unix time) refreshed every `LEASE_BEAT_S` seconds by a thread while the trial runs. A RUNNING trial is stale when
its worker is on this host and that process is gone (pid dead, or reused by another process), or when its beat is
older than `LEASE_GRACE_S` (another host, or no lease at all). Every worker looks for stale trials when it starts
and after each of its trials: each one is marked FAIL, its run directory `failed` with the reason, and the same
point re-queued as a new WAITING trial (up to `MAX_RETRIES` times). On an RDB storage (SQLite, PostgreSQL) Optuna's
own heartbeat does the same after its grace period and re-queues through the same function.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from aegir.run.directory import mark_ended
from aegir.rundir import METADATA, RunPaths, read_json_object

log = logging.getLogger("aegir")

LEASE_ATTR = "worker"       # user attribute {"host", "pid", "started"} of the process running the trial
BEAT_ATTR = "worker_beat"   # user attribute: unix time of the last beat
LEASE_BEAT_S = 20.0         # how often a running trial's beat is refreshed
LEASE_GRACE_S = 120.0       # a beat this old means the worker is gone (when its pid cannot be checked)
MAX_RETRIES = 3             # how many times one point is re-queued after its workers were lost
_LEASE_KEYS = (LEASE_ATTR, BEAT_ATTR, "run_dir")  # per attempt: never copied into the re-queued trial


def process_started(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/PID/stat, clock ticks since boot), None when there is no
    such process. With the pid it identifies one process: a pid reused after the worker died gives another value."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def this_worker() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": process_started(pid)}


def stale_reason(lease: Any, beat: Any, started_at: float | None, now: float, host: str,
                 grace_s: float = LEASE_GRACE_S) -> str | None:
    """Why a RUNNING trial's worker is gone (a one-line reason), or None when it may still be working.

    `lease` and `beat` are the trial's attributes, `started_at` its start (unix time), `host` this machine."""
    if isinstance(lease, dict) and lease.get("host") == host and isinstance(lease.get("pid"), int):
        alive = process_started(lease["pid"])
        if alive is None or (lease.get("started") is not None and alive != lease.get("started")):
            return f"worker pid {lease['pid']} on {host} is gone"
        return None
    last = beat if isinstance(beat, (int, float)) else started_at
    if last is not None and now - float(last) > grace_s:
        who = f"worker pid {lease.get('pid')} on {lease.get('host')}" if isinstance(lease, dict) else "its worker"
        return f"{who} sent no heartbeat for {now - float(last):.0f} s"
    return None


class TrialLease:
    """Context manager around one trial: writes the lease, and refreshes the beat from a daemon thread."""

    def __init__(self, trial: Any, beat_s: float = LEASE_BEAT_S) -> None:
        self.trial, self.beat_s = trial, beat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="aegir-trial-lease", daemon=True)

    def __enter__(self) -> "TrialLease":
        self.trial.set_user_attr(LEASE_ATTR, this_worker())
        self.trial.set_user_attr(BEAT_ATTR, time.time())
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                self.trial.set_user_attr(BEAT_ATTR, time.time())
            except Exception as err:  # noqa: BLE001 - a storage hiccup must not kill the trial; the next beat retries
                log.warning("sweep: could not refresh the lease of trial %d: %s", self.trial.number, err)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def requeue(study: Any, trial: Any, reason: str = "its worker sent no heartbeat") -> None:
    """Mark a lost trial's run directory failed and put its point back in the queue as a WAITING trial with the
    same parameters (and grid point), `MAX_RETRIES` times at most. Optuna's RDB heartbeat calls it too
    (`heartbeat_stale_trial_callback`)."""
    import optuna

    _mark_run_failed(trial.user_attrs.get("run_dir"), reason)
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRIES:
        log.warning("sweep: trial %d lost its worker %d times; its point is not re-queued again", trial.number,
                    len(history))
        return
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k not in _LEASE_KEYS},
        system_attrs={**trial.system_attrs, "failed_trial": trial.number, "retry_history": history}))


def retried_numbers(trials: list[Any]) -> set[int]:
    """Numbers of the failed trials whose point was re-queued: they do not count toward `n_trials`."""
    return {int(t.system_attrs["failed_trial"]) for t in trials if "failed_trial" in t.system_attrs}


def _mark_run_failed(run_dir: Any, reason: str) -> None:
    """The lost trial's run directory (and its stages) said `running` forever: make it `failed` with the reason."""
    if not run_dir:
        return
    for meta in [Path(run_dir) / METADATA, *sorted(Path(run_dir).glob(f"stages/*/{METADATA}"))]:
        metadata, _ = read_json_object(meta)
        if metadata is None or metadata.get("status") != "running":
            continue  # absent, unreadable (the report says so) or already ended
        try:
            mark_ended(RunPaths(meta.parent), "failed", reason=f"WorkerLost: {reason}")
        except OSError as err:
            log.warning("sweep: could not mark %s failed: %s", meta, err)


def recover_stale_trials(study: Any, grace_s: float = LEASE_GRACE_S) -> list[tuple[int, str]]:
    """Fail and re-queue every RUNNING trial whose worker is gone; returns [(trial number, reason)]."""
    import optuna

    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; the warning would open every sweep
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB storages: Optuna's heartbeat (re-queues through `requeue`)
    host, now, recovered = socket.gethostname(), time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        reason = stale_reason(trial.user_attrs.get(LEASE_ATTR), trial.user_attrs.get(BEAT_ATTR), started, now, host,
                              grace_s)
        if reason is None:
            continue
        try:
            study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason)  # shown by the dashboard
            if not study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished meanwhile, or another worker recovered it first
        requeue(study, study._storage.get_trial(trial._trial_id), reason)
        log.warning("sweep: trial %d failed (%s); its point is re-queued", trial.number, reason)
        recovered.append((trial.number, reason))
    return recovered

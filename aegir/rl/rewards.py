"""Rewards for GRPO: named reward components, their registry, and the composer that scores a batch.

A *component* is a plain function ``(record, completion) -> float | None``: it sees the dataset record (prompt,
answer, task, ...) and the decoded completion text, never the policy. ``None`` means "this reward does not apply
to this record" (a task-specific verifier on another task's prompt), as in TRL's multi-task rewards.

Model output is hostile input, so the composer assumes any component can raise, return garbage, hang or crash:

* A component that raises, or returns something that is not a finite real number (NaN, a string, 1e300), is
  scored **0**, counted in ``RewardBatch.errors`` and kept as an error sample (component, reason, record id,
  completion) for the run's ``samples/errors.jsonl`` (:func:`write_error_samples`).
* With ``workers > 0`` every call runs in a worker process with a per-call timeout. A worker first gets a
  ``SIGALRM`` at ``timeout_s`` (interrupts sleeps and Python loops); if the call still has not answered
  ``timeout_s * 1.5 + 0.25`` seconds after it was sent (a C-level hang, code that swallows the alarm) its worker is
  killed and replaced. Either way the call scores 0 with reason ``"timeout"``. A worker that dies (segfault,
  ``os._exit``) costs only its own call ("worker died ..."); the other workers keep going.
* With ``workers == 0`` components run in the training process: fastest, but there is no timeout; use it for
  trusted, cheap verifiers only.
* ``workers: auto`` (the default of ``reward=v42``, and of a config without ``workers``) starts :data:`AUTO_WORKERS` workers when any evaluated component
  was registered with ``untrusted=True`` -- it runs model-written code, like ``sql_exec`` running the policy's SQL --
  and scores those components in the pool and the trusted ones in-process (no pool at all without an untrusted
  component). An explicit ``workers: 0`` with such a component logs a warning; an explicit ``workers: N`` pools
  every component.
* Each worker runs under an address-space limit of ``memory_mb`` MiB above its size when it started
  (``RLIMIT_AS``; null = none): a component that allocates more gets a MemoryError (scored 0, an error) instead of
  growing the training machine's memory.

Composition (config ``{"components": {NAME: {"weight": w}}, "gate": NAME | None, "workers": n | "auto",
"timeout_s": t, "memory_mb": m | None}``, plus the optional ``pass_rates`` (diagnostic pass-rate metrics,
docs/grpo.md) and ``catalog_reload`` (task=ontology, docs/ontology.md))::

    R = G · Σ_k w_k R_k        over the components k that apply to the record (R_k is not None)

* No renormalisation: a component that returns None simply drops out of the sum; the other weights keep their
  values, so a task's reward scale does not depend on how many other tasks' rewards exist.
* ``G`` is the optional multiplicative gate component (e.g. "only a well-formed answer earns anything"). No gate
  configured, or a gate that returns None for the record, means ``G = 1``: a gate that does not apply must not
  zero out a reward. A gate that errors scores 0, like any component, so the total is 0.
* A row where no weighted component applies gets ``total = 0`` and ``applicable = False``; the GRPO loop leaves
  it out of its group's baseline and gives it advantage 0 (TRL's None -> NaN, nanmean / nanstd).
* :func:`gated_components` gives the per-component view that GDPO-style normalisation needs: G·R_k per weighted
  component, NaN where R_k did not apply, so Σ_k w_k G·R_k over the applicable k is the total above.
* Every evaluated component (gate included) is reported on its own in ``RewardBatch.components``: NaN where it
  returned None, 0 where it errored. That is what GDPO-style per-component normalisation and per-reward logging
  need. A weight of 0 keeps a component as a logged metric that does not move the policy.

Worker start method: ``fork`` on Linux, so workers inherit every registered reward (including ones registered at
runtime by user code or tests) and a replacement worker starts instantly; workers only run the pure-Python reward
functions, never torch. Elsewhere ``spawn``: each call carries its component's defining module, which the worker
imports to register it.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import multiprocessing
import numbers
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from aegir.errors import InputError

RewardFn = Callable[[Mapping[str, Any], str], "float | None"]

TIMEOUT = "timeout"
"""The error reason recorded for a call that ran past ``timeout_s``."""

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 1024
"""Address space each reward worker may add to what it had when it started (``memory_mb``)."""
AUTO_WORKERS = 2
"""Workers started by ``workers: auto`` when a component runs model-written code (see the module docstring)."""
MAX_SAMPLE_COMPLETION_CHARS = 4096  # an error sample keeps this much of the completion (a hostile one can be huge)
MAX_ERROR_MESSAGE_CHARS = 500
WORKER_STARTUP_TIMEOUT_S = 120.0  # a spawned worker imports torch; a fork is ready in milliseconds
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
_READY = "ready"

# Modules whose import registers built-in rewards; imported on demand so `get_reward("toy_exact")` works without
# the caller knowing where the verifier lives (and without an import cycle: those modules import this one).
_BUILTIN_REWARD_MODULES: tuple[str, ...] = ("aegir.tasks.toy", "aegir.tasks.commerce.rewards",
                                             "aegir.tasks.ontology.rewards")

_REGISTRY: dict[str, RewardFn] = {}
_UNTRUSTED: set[str] = set()  # names registered with untrusted=True: they execute model-written code
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------


def register_reward(name: str, *, untrusted: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering a top-level reward function under ``name`` (top-level so a worker can import it).

    ``untrusted=True`` marks a reward that runs model-written code (SQL, Python, ...): ``workers: auto`` then scores
    in worker processes with a hard per-call timeout and a memory limit. Registering a different function under a
    taken name is a programming error; re-registering the same function (a module imported twice, a reload)
    replaces it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"reward name must be a non-empty string, got {name!r}")

    def decorator(fn: RewardFn) -> RewardFn:
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified_name(existing) != _qualified_name(fn):
            raise ValueError(f"reward '{name}' is already registered by {_qualified_name(existing)}; "
                             f"cannot register {_qualified_name(fn)} under the same name")
        _REGISTRY[name] = fn
        if untrusted:
            _UNTRUSTED.add(name)
        else:
            _UNTRUSTED.discard(name)
        return fn

    return decorator


def runs_untrusted_code(name: str) -> bool:
    """Whether the reward registered as ``name`` was registered with ``untrusted=True``."""
    return name in _UNTRUSTED


def registered_rewards() -> list[str]:
    """Sorted names of every registered reward (built-ins included)."""
    _import_builtin_rewards()
    return sorted(_REGISTRY)


def get_reward(name: str, where: str = "reward") -> RewardFn:
    """The reward registered as ``name``; an unknown name is a user error naming ``where`` and the known names."""
    if isinstance(name, str) and name not in _REGISTRY:
        _import_builtin_rewards()
    if not isinstance(name, str) or name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise InputError(f"config error: {where}: unknown reward '{name}'; registered rewards: {known}")
    return _REGISTRY[name]


def _import_builtin_rewards() -> None:
    for module in _BUILTIN_REWARD_MODULES:
        importlib.import_module(module)


def _qualified_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


# ----------------------------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------------------------

_SPEC_KEYS = ("components", "gate", "workers", "timeout_s", "memory_mb", "catalog_reload", "pass_rates")


@dataclass(frozen=True)
class RewardSpec:
    """Validated reward configuration: component weights, optional gate, worker count (``auto`` resolved),
    per-call timeout and the workers' memory limit."""

    components: dict[str, float]
    gate: str | None = None
    workers: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    catalog_reload: bool = False  # task=ontology: re-read task.catalog on a content change (aegir.tasks.ontology.reload)
    # Pass-rate metrics NAME -> (component, bar): the share of rows where the component applies and is >= bar,
    # logged as grpo/pass/NAME per step and eval/pass/NAME per eval.
    pass_rates: dict[str, tuple[str, float]] = field(default_factory=dict)
    memory_mb: int | None = DEFAULT_MEMORY_MB
    pooled: frozenset[str] | None = None
    """With workers > 0, the components scored in the pool; None = all. ``workers: auto`` pools the untrusted
    ones only, so the cheap trusted verifiers pay no inter-process round trip."""

    def runs_in_pool(self, name: str) -> bool:
        """Whether component `name` is scored by the worker pool (when there is one)."""
        return self.pooled is None or name in self.pooled

    @property
    def untrusted_names(self) -> list[str]:
        """The evaluated components that run model-written code (registered with ``untrusted=True``)."""
        return [name for name in self.evaluated_names if runs_untrusted_code(name)]

    @property
    def evaluated_names(self) -> list[str]:
        """Every component the composer calls, each once: the weighted ones, then the gate if it is not one."""
        names = list(self.components)
        if self.gate is not None and self.gate not in self.components:
            names.append(self.gate)
        return names

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], where: str = "reward") -> RewardSpec:
        """Validate a config mapping (a Hydra DictConfig works); every problem is an InputError naming its key."""
        if not isinstance(cfg, Mapping):
            raise InputError(f"config error: {where}: expected a mapping with keys {', '.join(_SPEC_KEYS)}, "
                             f"got {type(cfg).__name__}")
        unknown = sorted(str(key) for key in cfg if key not in _SPEC_KEYS)
        if unknown:
            raise InputError(f"config error: {where}: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(_SPEC_KEYS)}")
        raw_components = cfg.get("components")
        if not isinstance(raw_components, Mapping) or not raw_components:
            raise InputError(f"config error: {where}.components: expected a non-empty mapping "
                             f"NAME: {{weight: float}}, got {raw_components!r}")
        components: dict[str, float] = {}
        for name, entry in raw_components.items():
            key = f"{where}.components.{name}"
            get_reward(str(name), where=f"{where}.components")
            components[str(name)] = _parse_weight(entry, key)
        gate = cfg.get("gate")
        if gate is not None:
            if not isinstance(gate, str):
                raise InputError(f"config error: {where}.gate: expected a reward name or null, got {gate!r}")
            get_reward(gate, where=f"{where}.gate")
        workers = cfg.get("workers", "auto")
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise InputError(f"config error: {where}.workers: expected an integer >= 0 (0 = in-process) or auto, "
                             f"got {workers!r}")
        timeout_s = cfg.get("timeout_s", DEFAULT_TIMEOUT_S)
        if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s)
                or timeout_s <= 0):
            raise InputError(f"config error: {where}.timeout_s: expected a number of seconds > 0, got {timeout_s!r}")
        memory_mb = cfg.get("memory_mb", DEFAULT_MEMORY_MB)
        if memory_mb is not None and (isinstance(memory_mb, bool) or not isinstance(memory_mb, int)
                                      or memory_mb < 1):
            raise InputError(f"config error: {where}.memory_mb: expected an integer >= 1 (MiB per worker) or null, "
                             f"got {memory_mb!r}")
        evaluated = list(components) + ([gate] if gate is not None and gate not in components else [])
        untrusted = [name for name in evaluated if runs_untrusted_code(name)]
        pooled: frozenset[str] | None = None
        if workers == "auto":
            workers = AUTO_WORKERS if untrusted else 0
            pooled = frozenset(untrusted)
        elif workers == 0 and untrusted:
            log.warning("%s.workers=0: %s run%s model-written code in the training process, without a hard "
                        "timeout or memory limit (workers: auto starts a worker pool)", where, ", ".join(untrusted),
                        "s" if len(untrusted) == 1 else "")
        catalog_reload = cfg.get("catalog_reload", False)
        if not isinstance(catalog_reload, bool):
            raise InputError(f"config error: {where}.catalog_reload: expected true or false, got {catalog_reload!r}")
        pass_rates = _parse_pass_rates(cfg.get("pass_rates") or {}, [*components, *([gate] if gate else [])],
                                       f"{where}.pass_rates")
        return cls(components=components, gate=gate, workers=workers, timeout_s=float(timeout_s),
                   memory_mb=memory_mb, pooled=pooled, catalog_reload=catalog_reload, pass_rates=pass_rates)


def _parse_pass_rates(raw: Any, evaluated: Sequence[str], where: str) -> dict[str, tuple[str, float]]:
    """`NAME: {component: C, min: bar}` for components the composer evaluates (weighted or the gate)."""
    if not isinstance(raw, Mapping):
        raise InputError(f"config error: {where}: expected a mapping NAME: {{component, min}}, got {raw!r}")
    out: dict[str, tuple[str, float]] = {}
    for name, entry in raw.items():
        key = f"{where}.{name}"
        if not isinstance(entry, Mapping) or set(entry) != {"component", "min"}:
            raise InputError(f"config error: {key}: expected {{component: NAME, min: NUMBER}}, got {entry!r}")
        if entry["component"] not in evaluated:
            raise InputError(f"config error: {key}.component: '{entry['component']}' is not a component or the gate "
                             f"of this reward; evaluated: {', '.join(evaluated)}")
        bar = entry["min"]
        if isinstance(bar, bool) or not isinstance(bar, (int, float)) or not math.isfinite(bar):
            raise InputError(f"config error: {key}.min: expected a finite number, got {bar!r}")
        out[str(name)] = (str(entry["component"]), float(bar))
    return out


def pass_rate(values: torch.Tensor, bar: float) -> float:
    """Share of the applicable (non-NaN) values that are >= bar; NaN when none applies."""
    present = values[~torch.isnan(values)]
    return float((present >= bar).double().mean()) if present.numel() else math.nan


def _parse_weight(entry: Any, key: str) -> float:
    """`{weight: w}` (weight defaults to 1.0, as TRL's reward_weights=None); null means weight 1.0."""
    if entry is None:
        return 1.0
    if not isinstance(entry, Mapping):
        raise InputError(f"config error: {key}: expected a mapping like {{weight: 1.0}}, got {entry!r}")
    extra = sorted(str(k) for k in entry if k != "weight")
    if extra:
        raise InputError(f"config error: {key}: unknown key(s) {', '.join(extra)}; allowed: weight")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise InputError(f"config error: {key}.weight: expected a finite number, got {weight!r}")
    return float(weight)


# ----------------------------------------------------------------------------------------------------------------
# Calling one component safely (shared by the in-process path and the workers)
# ----------------------------------------------------------------------------------------------------------------

Outcome = tuple["float | None", "str | None"]
"""(value, error): error is None on success (value None = not applicable); otherwise the reason, value ignored."""


class _CallTimeout(BaseException):
    """Raised by the worker's SIGALRM handler; a BaseException so a reward's `except Exception` cannot eat it."""


def _describe(exc: BaseException) -> str:
    """"Type: message", robust to exceptions whose __str__ itself fails, truncated for the error log."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not escape
        message = "<unprintable message>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_MESSAGE_CHARS]


def _check_value(value: Any) -> Outcome:
    """Accept None or a real number that fits a float32 reward tensor; anything else is the component's error."""
    if value is None:
        return None, None
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except Exception as exc:  # noqa: BLE001
            return None, f"bad return value: {_describe(exc)}"
        if math.isfinite(number) and abs(number) <= _FLOAT32_MAX:
            return number, None
        return None, f"bad return value: {number!r} is not a finite float32"
    return None, f"bad return value: expected float or None, got {type(value).__name__}"


def _evaluate(fn: RewardFn, record: Mapping[str, Any], completion: str) -> Outcome:
    """Call one component; exceptions (SystemExit included) become the error reason instead of propagating."""
    try:
        value = fn(record, completion)
    except (Exception, SystemExit) as exc:
        return None, _describe(exc)
    return _check_value(value)


def check_records(spec: RewardSpec, records: Sequence[Mapping[str, Any]],
                  where: Callable[[int, Mapping[str, Any]], str]) -> None:
    """Refuse records the configured rewards cannot score, before training starts.

    Every evaluated component is called once per record with an empty completion, in this process. Components
    raise only on a malformed record (a data bug: a sql_qa record without ``answer``, gold SQL that does not run on
    its database), so one that raises or returns garbage here would score every completion of that record 0 during
    training; instead it is an InputError ``"{where(i, record)}: reward NAME cannot score this record: why"``.
    (Warms caches too: the commerce verifiers keep each gold query's result, and forked workers inherit it.)
    """
    functions = {name: get_reward(name) for name in spec.evaluated_names}
    for index, record in enumerate(records):
        for name, fn in functions.items():
            _, error = _evaluate(fn, record, "")
            if error is not None:
                raise InputError(f"{where(index, record)}: reward {name} cannot score this record: {error}")


# ----------------------------------------------------------------------------------------------------------------
# Worker processes
# ----------------------------------------------------------------------------------------------------------------


def _raise_call_timeout(signum: int, frame: Any) -> None:
    raise _CallTimeout()


def _run_call_in_worker(name: str, module: str, record: Mapping[str, Any], completion: str,
                        timeout_s: float) -> Outcome:
    """Resolve the component by name (importing its module if this worker lacks it) and call it under SIGALRM."""
    fn = _REGISTRY.get(name)
    if fn is None:
        try:
            importlib.import_module(module)
        except (Exception, SystemExit) as exc:
            return None, f"worker could not import {module}: {_describe(exc)}"
        fn = _REGISTRY.get(name)
        if fn is None:
            return None, f"reward '{name}' is not registered in the worker process"
    use_alarm = hasattr(signal, "setitimer")
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return _evaluate(fn, record, completion)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _CallTimeout:
        return None, TIMEOUT


def _limit_address_space(memory_mb: int | None) -> None:
    """Let this process map at most `memory_mb` MiB more than it has now (RLIMIT_AS; Linux, best effort).

    Relative to the current size because a worker forked from the trainer already maps everything the trainer
    mapped (torch, CUDA's reservations), which costs nothing until written.
    """
    if memory_mb is None:
        return
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as handle:
            size = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = size + memory_mb * 2**20
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, OSError, ValueError):  # not Linux: no limit
        pass


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when the training process dies (a SIGKILLed trainer would otherwise leave
    its workers waiting forever: a forked worker holds both ends of its own pipe, so it never sees EOF)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the daemon flag covers a clean exit only
        return
    if os.getppid() != parent_pid:  # the trainer died before the request took effect
        os._exit(1)


def _worker_main(conn: Connection, memory_mb: int | None = None, parent_pid: int | None = None) -> None:
    """Worker loop: receive (name, module, record, completion, timeout_s), answer an Outcome; None means exit."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _limit_address_space(memory_mb)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle; it kills us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # drop any handler inherited from the trainer through fork
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _raise_call_timeout)
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a record that cannot be unpickled here; bytes were consumed
            conn.send((None, f"worker could not receive the call: {_describe(exc)}"))
            continue
        if message is None:
            return
        try:
            outcome = _run_call_in_worker(*message)
        except BaseException as exc:  # noqa: BLE001 - e.g. the alarm firing between the call and its cancellation
            outcome = (None, TIMEOUT if isinstance(exc, _CallTimeout) else _describe(exc))
        try:
            conn.send(outcome)
        except (EOFError, OSError):
            return


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection


_Call = tuple[str, str, Mapping[str, Any], str]  # (component name, its module, record, completion)


class _WorkerPool:
    """Worker processes with one pipe each, so a hung or crashed call costs one worker, never the batch.

    (A `multiprocessing.Pool` cannot kill one stuck task, and silently loses the task of a worker that died.)
    """

    def __init__(self, n_workers: int, timeout_s: float, start_method: str, memory_mb: int | None = None) -> None:
        self._ctx = multiprocessing.get_context(start_method)
        self._memory_mb = memory_mb
        self._timeout_s = timeout_s
        self._hard_timeout_s = timeout_s * 1.5 + 0.25
        self._workers: list[_Worker] = [self._start_worker() for _ in range(n_workers)]
        for worker in self._workers:  # started together, awaited after: spawn start-ups overlap
            self._await_ready(worker)

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child_conn, self._memory_mb, os.getpid()),
                                    name="aegir-reward-worker", daemon=True)
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn)

    @staticmethod
    def _await_ready(worker: _Worker) -> None:
        """Wait for the worker's hello, so a slow start (spawn imports torch) never eats into a call's timeout."""
        try:
            if worker.conn.poll(WORKER_STARTUP_TIMEOUT_S) and worker.conn.recv() == _READY:
                return
        except (EOFError, OSError):
            pass
        worker.process.kill()
        raise RuntimeError(f"reward worker did not start within {WORKER_STARTUP_TIMEOUT_S:.0f} s "
                           f"(exit code {worker.process.exitcode})")

    def _replace(self, slot: int) -> None:
        """Kill the worker in `slot` (if still alive) and start a fresh one there."""
        old = self._workers[slot]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(timeout=5.0)
        old.conn.close()
        self._workers[slot] = self._start_worker()
        self._await_ready(self._workers[slot])

    def _send(self, slot: int, call: _Call) -> str | None:
        """Send a call to an idle worker (replacing it once if it died while idle); the error reason, or None."""
        name, module, record, completion = call
        for _attempt in range(2):
            worker = self._workers[slot]
            if not worker.process.is_alive():
                self._replace(slot)
                worker = self._workers[slot]
            try:
                worker.conn.send((name, module, record, completion, self._timeout_s))
                return None
            except (BrokenPipeError, ConnectionResetError, EOFError):
                self._replace(slot)
            except Exception as exc:  # noqa: BLE001 - unpicklable record: pickling fails before any byte is sent
                return f"could not send the call to a worker: {_describe(exc)}"
        return "could not send the call to a worker: the worker keeps dying"

    def _receive(self, slot: int) -> Outcome:
        """The answer of a worker that became ready, or the reason it died."""
        worker = self._workers[slot]
        try:
            if worker.conn.poll():
                value, error = worker.conn.recv()
                return value, error
        except (EOFError, OSError):
            pass
        worker.process.join(timeout=5.0)
        exit_code = worker.process.exitcode
        self._replace(slot)
        return None, f"worker died (exit code {exit_code})"

    def run(self, calls: Sequence[_Call]) -> list[Outcome]:
        """Run every call, at most one per worker at a time; each call's deadline starts when it is sent."""
        outcomes: list[Outcome | None] = [None] * len(calls)
        queue = deque(range(len(calls)))
        busy: dict[int, tuple[int, float]] = {}  # worker slot -> (call index, hard deadline)
        while queue or busy:
            for slot in range(len(self._workers)):
                if not queue:
                    break
                if slot in busy:
                    continue
                index = queue.popleft()
                send_error = self._send(slot, calls[index])
                if send_error is None:
                    busy[slot] = (index, time.monotonic() + self._hard_timeout_s)
                else:
                    outcomes[index] = (None, send_error)
            if not busy:
                continue
            remaining = min(deadline for _, deadline in busy.values()) - time.monotonic()
            handles: list[Any] = [self._workers[slot].conn for slot in busy]
            handles += [self._workers[slot].process.sentinel for slot in busy]
            ready = set(wait(handles, timeout=max(0.0, remaining)))
            now = time.monotonic()
            for slot, (index, deadline) in list(busy.items()):
                worker = self._workers[slot]
                if worker.conn in ready or worker.process.sentinel in ready:
                    outcomes[index] = self._receive(slot)
                elif now >= deadline:
                    self._replace(slot)  # hung past its alarm: only a kill frees the worker
                    outcomes[index] = (None, TIMEOUT)
                else:
                    continue
                del busy[slot]
        return [outcome if outcome is not None else (None, "internal error: call lost") for outcome in outcomes]

    def close(self) -> None:
        """Ask workers to exit, then kill the ones that do not (a worker may be stuck in a reward)."""
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, EOFError):
                pass
        deadline = time.monotonic() + 1.0
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5.0)
            worker.conn.close()
        self._workers = []

    @property
    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        return [worker.process for worker in self._workers]


def default_start_method() -> str:
    """`fork` on Linux (workers inherit the registry, restarts are instant), `spawn` elsewhere (fork is unsafe)."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


# ----------------------------------------------------------------------------------------------------------------
# Composer
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RewardBatch:
    """Rewards of one batch: the composed total, every component on its own, and what went wrong."""

    total: torch.Tensor                                   # [n] float32, R = G · Σ w_k R_k (0 where nothing applies)
    components: dict[str, torch.Tensor]                   # name -> [n] float32; NaN where the component returned None
    applicable: torch.Tensor                              # [n] bool: at least one weighted component applied
    errors: int = 0                                       # calls that raised, returned garbage, timed out or crashed
    error_counts: dict[str, int] = field(default_factory=dict)  # name -> errors of that component
    error_samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Scalar logging view (TRL names): reward mean/std, per-component mean/std over applicable rows, errors."""
        out: dict[str, float] = {"reward/mean": _mean(self.total), "reward/std": _std(self.total),
                                 "reward/errors": float(self.errors)}
        n = max(1, self.total.numel())
        for name, values in self.components.items():
            present = values[~torch.isnan(values)]
            out[f"rewards/{name}/mean"] = _mean(present)
            out[f"rewards/{name}/std"] = _std(present)
            out[f"rewards/{name}/applicable"] = present.numel() / n
            out[f"rewards/{name}/errors"] = float(self.error_counts.get(name, 0))
        return out


def gated_components(scored: RewardBatch, spec: RewardSpec) -> torch.Tensor:
    """``[n, K]`` float32, the weighted components in ``spec.components`` order with the gate applied to each:
    column k = G · R_k, NaN where R_k did not apply. Gating every component keeps Σ_k w_k · column_k (over the
    non-NaN columns) equal to ``total`` = G · Σ_k w_k R_k, so a per-component normaliser (GDPO) sees the gate
    exactly as the summed reward does. G = 1 where no gate is configured or the gate did not apply."""
    n = scored.total.shape[0]
    gate = torch.ones(n, dtype=torch.float32)
    if spec.gate is not None:
        values = scored.components[spec.gate]
        gate = torch.where(torch.isnan(values), gate, values)
    if n == 0:
        return torch.zeros(0, len(spec.components), dtype=torch.float32)
    return torch.stack([scored.components[name].to(torch.float32) * gate for name in spec.components], dim=-1)


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


def _std(values: torch.Tensor) -> float:
    return float(values.double().std()) if values.numel() > 1 else (0.0 if values.numel() else math.nan)


class RewardComposer:
    """Scores completions with the configured components and composes them into one reward per completion.

    Use as a context manager (or call `close()`) when ``workers > 0`` so the worker processes are shut down; they
    are started lazily on the first `score` call.
    """

    def __init__(self, spec: RewardSpec | Mapping[str, Any], *, where: str = "reward",
                 start_method: str | None = None, max_error_samples: int = 64) -> None:
        self.spec = spec if isinstance(spec, RewardSpec) else RewardSpec.from_config(spec, where=where)
        self._functions: dict[str, RewardFn] = {name: get_reward(name, where=f"{where}.components")
                                                for name in self.spec.evaluated_names}
        self._start_method = start_method or default_start_method()
        self._max_error_samples = max_error_samples
        self._pool: _WorkerPool | None = None

    @property
    def names(self) -> list[str]:
        """Components reported by `score`, in a stable order."""
        return self.spec.evaluated_names

    def score(self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]) -> RewardBatch:
        """Score `completions[i]` against `records[i]`; never raises because of what a component or completion does."""
        if len(records) != len(completions):
            raise ValueError(f"score: {len(records)} records but {len(completions)} completions")
        for completion in completions:
            if not isinstance(completion, str):
                raise TypeError(f"score: completions must be decoded str, got {type(completion).__name__}")
        names = self.names
        outcomes = self._run_all(names, records, completions)

        n = len(completions)
        values = {name: torch.full((n,), math.nan, dtype=torch.float64) for name in names}
        error_counts = {name: 0 for name in names}
        error_samples: list[dict[str, Any]] = []
        for (row, name), (value, error) in outcomes.items():
            if error is not None:
                values[name][row] = 0.0
                error_counts[name] += 1
                if len(error_samples) < self._max_error_samples:
                    error_samples.append(_error_sample(name, error, records[row], completions[row]))
            elif value is not None:
                values[name][row] = value

        weighted = torch.zeros(n, dtype=torch.float64)
        applicable = torch.zeros(n, dtype=torch.bool)
        for name, weight in self.spec.components.items():
            present = ~torch.isnan(values[name])
            weighted += torch.where(present, values[name] * weight, torch.zeros_like(weighted))
            applicable |= present
        gate = torch.ones(n, dtype=torch.float64)
        if self.spec.gate is not None:
            gate_values = values[self.spec.gate]
            gate = torch.where(torch.isnan(gate_values), gate, gate_values)
        total = torch.where(applicable, gate * weighted, torch.zeros_like(weighted))
        return RewardBatch(
            total=total.to(torch.float32),
            components={name: tensor.to(torch.float32) for name, tensor in values.items()},
            applicable=applicable,
            errors=sum(error_counts.values()),
            error_counts=error_counts,
            error_samples=error_samples,
        )

    def _run_all(self, names: Sequence[str], records: Sequence[Mapping[str, Any]],
                 completions: Sequence[str]) -> dict[tuple[int, str], Outcome]:
        keys = [(row, name) for row in range(len(completions)) for name in names]
        pooled = [key for key in keys if self.spec.workers > 0 and self.spec.runs_in_pool(key[1])]
        outcomes = {(row, name): _evaluate(self._functions[name], records[row], completions[row])
                    for row, name in keys if self.spec.workers == 0 or not self.spec.runs_in_pool(name)}
        if pooled:
            if self._pool is None:
                self._pool = _WorkerPool(self.spec.workers, self.spec.timeout_s, self._start_method,
                                         self.spec.memory_mb)
            calls = [(name, self._functions[name].__module__, records[row], completions[row]) for row, name in pooled]
            outcomes.update(zip(pooled, self._pool.run(calls)))
        return {key: outcomes[key] for key in keys}

    @property
    def worker_processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The live worker processes (empty in-process or before the first `score`)."""
        return self._pool.processes if self._pool is not None else []

    def close(self) -> None:
        """Shut the worker processes down (idempotent); the next `score` would start new ones."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> RewardComposer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; workers are daemons and die with us anyway
            pass


def _error_sample(name: str, error: str, record: Mapping[str, Any], completion: str) -> dict[str, Any]:
    record_id = record.get("id") if isinstance(record, Mapping) else None
    return {
        "component": name,
        "error": error,
        "record_id": None if record_id is None else str(record_id),
        "completion": completion[:MAX_SAMPLE_COMPLETION_CHARS],
        "completion_chars": len(completion),
    }


def write_error_samples(path: Path, samples: Iterable[Mapping[str, Any]]) -> int:
    """Append samples as JSON lines (the run's ``samples/errors.jsonl``); returns how many were written.

    ASCII-escaped JSON, so any completion text (lone surrogates, NUL bytes) yields a valid UTF-8 file.
    """
    lines = [json.dumps(dict(sample), ensure_ascii=True, default=str) for sample in samples]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return len(lines)


def iter_error_samples(path: Path) -> Iterator[dict[str, Any]]:
    """Read back a file written by `write_error_samples` (for reports and tests)."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)

"""Misbehaving and hand-checkable reward components for the reward-composer tests.

They live in an importable module (not in a test file) so worker processes can resolve them by name: with the
`fork` start method workers inherit these registrations; with `spawn` the worker imports this module.
All names start with `test_` so they never collide with real rewards.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from aegir.rl.rewards import register_reward


@register_reward("test_const_half")
def const_half(record: Mapping[str, Any], completion: str) -> float:
    return 0.5


@register_reward("test_length")
def length(record: Mapping[str, Any], completion: str) -> float:
    """len/10 capped at 1: easy to compute by hand."""
    return min(1.0, len(completion) / 10)


@register_reward("test_task_a_only")
def task_a_only(record: Mapping[str, Any], completion: str) -> float | None:
    """Applies only to records of task "a"."""
    return 1.0 if record.get("task") == "a" else None


@register_reward("test_gate_ok")
def gate_ok(record: Mapping[str, Any], completion: str) -> float | None:
    """1 if the completion contains "ok", else 0; not applicable to task "nogate"."""
    if record.get("task") == "nogate":
        return None
    return 1.0 if "ok" in completion else 0.0


@register_reward("test_raise_on_bad")
def raise_on_bad(record: Mapping[str, Any], completion: str) -> float:
    if "bad" in completion:
        raise ValueError("boom on bad")
    return 1.0


@register_reward("test_bad_value")
def bad_value(record: Mapping[str, Any], completion: str) -> Any:
    """Returns what the record's "value" says: NaN, inf, a string, a huge float, a numpy-like real..."""
    return record["value"]


@register_reward("test_system_exit")
def system_exit(record: Mapping[str, Any], completion: str) -> float:
    raise SystemExit(3)


@register_reward("test_sleep")
def sleep(record: Mapping[str, Any], completion: str) -> float:
    """Sleeps record["sleep"] seconds (interruptible by the worker's alarm), then scores 1."""
    time.sleep(float(record.get("sleep", 0.0)))
    return 1.0


@register_reward("test_hang_blocking_alarm")
def hang_blocking_alarm(record: Mapping[str, Any], completion: str) -> float:
    """Blocks SIGALRM, then sleeps: stands in for a hang in C code that no signal interrupts."""
    if record.get("hang"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    return 1.0


@register_reward("test_swallow_timeout")
def swallow_timeout(record: Mapping[str, Any], completion: str) -> float:
    """A reward that catches everything, the alarm included, and never returns."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException:  # noqa: BLE001 - deliberately hostile
            pass
    return 1.0


@register_reward("test_crash")
def crash(record: Mapping[str, Any], completion: str) -> float:
    """Kills its (worker) process without a word when the completion says "crash". Never use in-process."""
    if "crash" in completion:
        os._exit(7)
    return 1.0


@register_reward("test_untrusted_echo", untrusted=True)
def untrusted_echo(record: Mapping[str, Any], completion: str) -> float:
    """Stands for a reward that runs model-written code (registered untrusted): reports the process it ran in."""
    return float(os.getpid() % 1000) / 1000


@register_reward("test_allocate")
def allocate(record: Mapping[str, Any], completion: str) -> float:
    """Allocates record["mb"] MiB and touches it (a reward that runs away with memory)."""
    block = bytearray(int(record["mb"]) * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    return 1.0

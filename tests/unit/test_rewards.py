"""Reward registry, spec validation, composition arithmetic, and survival of hostile components and completions."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from aegir.errors import InputError
from aegir.rl.rewards import (
    TIMEOUT,
    RewardComposer,
    RewardSpec,
    get_reward,
    iter_error_samples,
    register_reward,
    registered_rewards,
    write_error_samples,
)
from tests.unit import reward_fixtures

NAN = math.nan


def spec(components: dict[str, float], gate: str | None = None, workers: int = 0, timeout_s: float = 0.5) -> dict:
    return {"components": {name: {"weight": w} for name, w in components.items()}, "gate": gate,
            "workers": workers, "timeout_s": timeout_s}


def assert_close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# Registry and spec validation
# ---------------------------------------------------------------------------------------------------------------


def test_registry_resolves_fixture_and_builtin_rewards() -> None:
    assert get_reward("test_const_half") is reward_fixtures.const_half
    assert {"toy_exact", "toy_partial", "toy_format", "test_length"} <= set(registered_rewards())


def test_unknown_reward_is_input_error_listing_known_names() -> None:
    with pytest.raises(InputError, match=r"reward\.components: unknown reward 'nope'.*toy_exact"):
        RewardComposer(spec({"nope": 1.0}))
    with pytest.raises(InputError, match=r"reward\.gate: unknown reward 'nope'"):
        RewardComposer(spec({"test_const_half": 1.0}, gate="nope"))


def test_registering_a_different_function_under_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_const_half")(lambda record, completion: 0.0)


@pytest.mark.parametrize("cfg, key", [
    ({"components": {}}, r"reward\.components"),
    ({"components": {"test_const_half": {"weight": "x"}}}, r"reward\.components\.test_const_half\.weight"),
    ({"components": {"test_const_half": {"weight": math.inf}}}, r"test_const_half\.weight"),
    ({"components": {"test_const_half": {"wieght": 1.0}}}, r"unknown key\(s\) wieght"),
    ({"components": {"test_const_half": None}, "workers": -1}, r"reward\.workers"),
    ({"components": {"test_const_half": None}, "timeout_s": 0}, r"reward\.timeout_s"),
    ({"components": {"test_const_half": None}, "workerz": 2}, r"unknown key\(s\) workerz"),
])
def test_bad_spec_is_input_error_naming_the_key(cfg: dict, key: str) -> None:
    with pytest.raises(InputError, match=key):
        RewardSpec.from_config(cfg)


def test_spec_defaults_weight_one_and_in_process() -> None:
    parsed = RewardSpec.from_config({"components": {"test_const_half": None, "test_length": {}}})
    assert parsed.components == {"test_const_half": 1.0, "test_length": 1.0}
    assert parsed.gate is None and parsed.workers == 0


# ---------------------------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------------------------


def test_weights_gate_and_none_by_hand() -> None:
    """R = G · Σ w_k R_k over applicable components; a None gate counts as 1; no renormalisation."""
    composer = RewardComposer(spec({"test_const_half": 2.0, "test_length": -1.0, "test_task_a_only": 0.5},
                                   gate="test_gate_ok"))
    records = [{"id": "r0", "task": "a"}, {"id": "r1", "task": "b"}, {"id": "r2", "task": "nogate"}]
    batch = composer.score(records, ["ok12345678", "xyz", "ab"])
    # r0: gate 1, 2*0.5 - 1*1.0 + 0.5*1 = 0.5;  r1: gate 0 -> 0 (sum 0.7);  r2: gate None -> 1, 2*0.5 - 0.2 = 0.8
    assert_close(batch.total, [0.5, 0.0, 0.8])
    assert_close(batch.components["test_task_a_only"], [1.0, NAN, NAN])
    assert_close(batch.components["test_gate_ok"], [1.0, 0.0, NAN])
    assert_close(batch.components["test_length"], [1.0, 0.3, 0.2])
    assert list(batch.components) == ["test_const_half", "test_length", "test_task_a_only", "test_gate_ok"]
    assert batch.applicable.tolist() == [True, True, True]
    assert batch.errors == 0 and batch.error_samples == []
    assert batch.total.dtype == torch.float32


def test_gate_that_is_also_a_weighted_component_is_called_once_and_reported_once() -> None:
    composer = RewardComposer(spec({"test_gate_ok": 3.0}, gate="test_gate_ok"))
    batch = composer.score([{"task": "x"}, {"task": "x"}], ["ok", "no"])
    assert_close(batch.total, [3.0, 0.0])  # 1 · (3·1) and 0 · (3·0)
    assert list(batch.components) == ["test_gate_ok"]


def test_row_with_no_applicable_component_totals_zero_and_is_flagged() -> None:
    composer = RewardComposer(spec({"test_task_a_only": 1.0}))
    batch = composer.score([{"task": "a"}, {"task": "b"}], ["x", "y"])
    assert_close(batch.total, [1.0, 0.0])
    assert batch.applicable.tolist() == [True, False]
    assert batch.metrics()["rewards/test_task_a_only/std"] == 0.0  # one applicable row
    assert batch.metrics()["rewards/test_task_a_only/applicable"] == 0.5


def test_empty_batch_and_length_mismatch() -> None:
    composer = RewardComposer(spec({"test_const_half": 1.0}))
    batch = composer.score([], [])
    assert batch.total.shape == (0,) and batch.components["test_const_half"].shape == (0,)
    with pytest.raises(ValueError, match="2 records but 1 completions"):
        composer.score([{}, {}], ["x"])
    with pytest.raises(TypeError, match="decoded str"):
        composer.score([{}], [b"bytes"])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------------------------
# Errors in-process
# ---------------------------------------------------------------------------------------------------------------


def test_raising_component_scores_zero_is_counted_and_sampled() -> None:
    composer = RewardComposer(spec({"test_raise_on_bad": 1.0, "test_const_half": 1.0}))
    batch = composer.score([{"id": "ok-1"}, {"id": 42}], ["fine", "bad"])
    assert_close(batch.total, [1.5, 0.5])
    assert_close(batch.components["test_raise_on_bad"], [1.0, 0.0])
    assert batch.errors == 1 and batch.error_counts == {"test_raise_on_bad": 1, "test_const_half": 0}
    [sample] = batch.error_samples
    assert sample == {"component": "test_raise_on_bad", "error": "ValueError: boom on bad", "record_id": "42",
                      "completion": "bad", "completion_chars": 3}
    assert batch.metrics()["rewards/test_raise_on_bad/errors"] == 1.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e300, "1.0", [1.0], object()])
def test_bad_return_values_are_errors_scored_zero(value: object) -> None:
    composer = RewardComposer(spec({"test_bad_value": 1.0, "test_const_half": 1.0}))
    batch = composer.score([{"value": value}], ["x"])
    assert_close(batch.total, [0.5])
    assert batch.errors == 1 and batch.error_samples[0]["error"].startswith("bad return value")
    assert torch.isfinite(batch.total).all()


def test_accepted_return_values() -> None:
    composer = RewardComposer(spec({"test_bad_value": 1.0}))
    batch = composer.score([{"value": 1}, {"value": True}, {"value": -2.5}, {"value": None}], ["", "", "", ""])
    assert_close(batch.total, [1.0, 1.0, -2.5, 0.0])
    assert batch.errors == 0


def test_system_exit_in_a_component_does_not_end_the_run() -> None:
    batch = RewardComposer(spec({"test_system_exit": 1.0})).score([{}], ["x"])
    assert batch.errors == 1 and batch.error_samples[0]["error"] == "SystemExit: 3"


HOSTILE = [
    "",
    "7" * 5_000_000,                       # huge digit string (int() of it would raise past 4300 digits)
    "\ufffd\ufffd" * 1000,                 # what invalid UTF-8 decodes to
    "\x00\x00\x00",
    "1\x002",
    "\ud800\udfff",                        # lone surrogates
    "٣",                                   # Arabic-Indic digit: int() accepts it
    "１２",                                # fullwidth digits
    "-" * 10_000,
    " \n\t" * 1000 + "7",
    "<|eos|>",
]


def test_hostile_completions_never_raise_out_of_score() -> None:
    composer = RewardComposer(spec({"toy_exact": 1.0, "toy_partial": 0.5, "toy_format": 0.1, "test_length": 0.1},
                                   gate="toy_format"))
    records = [{"id": str(i), "task": "toy_arith", "prompt": "3+4=", "answer": 7} for i in range(len(HOSTILE))]
    batch = composer.score(records, HOSTILE)
    assert batch.errors == 0
    assert torch.isfinite(batch.total).all()
    assert batch.total[-2].item() == pytest.approx(0.0)  # "   7" parses (whitespace), but the strict format gate is 0


# ---------------------------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------------------------


def test_pool_matches_in_process_scores() -> None:
    components = {"toy_exact": 1.0, "toy_partial": 0.5, "test_length": 0.25, "test_task_a_only": 2.0}
    records = [{"id": str(i), "task": "toy_arith" if i % 3 else "a", "answer": i} for i in range(12)]
    completions = [str(i + (i % 2)) for i in range(12)]
    in_process = RewardComposer(spec(components, gate="test_gate_ok")).score(records, completions)
    with RewardComposer(spec(components, gate="test_gate_ok", workers=2, timeout_s=5.0)) as pooled:
        batch = pooled.score(records, completions)
    torch.testing.assert_close(batch.total, in_process.total)
    for name, values in in_process.components.items():
        torch.testing.assert_close(batch.components[name], values, equal_nan=True)


def test_sleeping_component_times_out_and_others_still_score() -> None:
    with RewardComposer(spec({"test_sleep": 1.0}, workers=2, timeout_s=0.5)) as composer:
        start = time.monotonic()
        batch = composer.score([{"id": "a"}, {"id": "slow", "sleep": 30}, {"id": "c"}], ["x", "y", "z"])
        elapsed = time.monotonic() - start
    assert elapsed < 2.5
    assert_close(batch.total, [1.0, 0.0, 1.0])
    assert batch.errors == 1
    assert batch.error_samples[0]["error"] == TIMEOUT and batch.error_samples[0]["record_id"] == "slow"


@pytest.mark.parametrize("name, record", [("test_hang_blocking_alarm", {"hang": True}),
                                          ("test_swallow_timeout", {})])
def test_hung_worker_is_killed_and_replaced(name: str, record: dict) -> None:
    """Hangs the alarm cannot break are ended by killing the worker; the composer keeps working afterwards."""
    with RewardComposer(spec({name: 1.0, "test_const_half": 1.0}, workers=2, timeout_s=0.3)) as composer:
        start = time.monotonic()
        batch = composer.score([record], ["x"])
        elapsed = time.monotonic() - start
        assert elapsed < 2.0
        assert_close(batch.total, [0.5])
        assert batch.error_samples[0]["error"] == TIMEOUT and batch.error_samples[0]["component"] == name
        again = composer.score([{}, {}], ["x", "y"]) if name == "test_hang_blocking_alarm" else None
        if again is not None:
            assert_close(again.total, [1.5, 1.5])
        assert all(process.is_alive() for process in composer.worker_processes)


def test_worker_crash_costs_only_its_call() -> None:
    with RewardComposer(spec({"test_crash": 1.0}, workers=2, timeout_s=5.0)) as composer:
        start = time.monotonic()
        batch = composer.score([{"id": str(i)} for i in range(4)], ["fine", "crash", "fine", "fine"])
        assert time.monotonic() - start < 3.0
        assert_close(batch.total, [1.0, 0.0, 1.0, 1.0])
        assert batch.errors == 1
        assert batch.error_samples[0]["error"] == "worker died (exit code 7)"
        assert batch.error_samples[0]["record_id"] == "1"
        assert_close(composer.score([{}], ["fine"]).total, [1.0])


def test_raising_and_unpicklable_inputs_in_workers_are_errors() -> None:
    with RewardComposer(spec({"test_raise_on_bad": 1.0}, workers=1, timeout_s=5.0)) as composer:
        batch = composer.score([{"id": "p"}, {"id": "q", "junk": lambda: None}], ["bad", "fine"])
    assert_close(batch.total, [0.0, 0.0])
    assert batch.errors == 2
    assert batch.error_samples[0]["error"] == "ValueError: boom on bad"
    assert batch.error_samples[1]["error"].startswith("could not send the call to a worker")


@pytest.mark.slow
def test_spawn_workers_import_components_and_start_outside_the_timeout() -> None:
    """The non-Linux path: a spawned worker imports torch (seconds) and registers components by importing their
    module; a 0.5 s per-call timeout must still not fire, because the clock starts once the worker is ready."""
    components = {"test_length": 1.0, "toy_exact": 1.0}
    with RewardComposer(spec(components, workers=1, timeout_s=0.5), start_method="spawn") as composer:
        batch = composer.score([{"task": "toy_arith", "answer": 3}] * 2, ["3", "33"])
    assert batch.errors == 0
    assert_close(batch.total, [1.1, 0.2])


def test_close_stops_workers() -> None:
    composer = RewardComposer(spec({"test_const_half": 1.0}, workers=2))
    assert composer.worker_processes == []
    composer.score([{}], ["x"])
    processes = composer.worker_processes
    assert len(processes) == 2 and all(process.is_alive() for process in processes)
    composer.close()
    assert not any(process.is_alive() for process in processes)
    composer.close()  # idempotent


# ---------------------------------------------------------------------------------------------------------------
# Error log
# ---------------------------------------------------------------------------------------------------------------


def test_write_error_samples_appends_valid_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "samples" / "errors.jsonl"
    batch = RewardComposer(spec({"test_raise_on_bad": 1.0})).score(
        [{"id": "a"}, {"id": "b"}], ["bad \ud800 \x00", "bad " + "x" * 10_000])
    assert write_error_samples(path, batch.error_samples) == 2
    assert write_error_samples(path, [{"component": "c", "error": "timeout", "step": 3}]) == 1
    assert write_error_samples(path, []) == 0
    path.read_bytes().decode("utf-8")  # valid UTF-8 despite the lone surrogate
    rows = list(iter_error_samples(path))
    assert [row["component"] for row in rows] == ["test_raise_on_bad", "test_raise_on_bad", "c"]
    assert rows[0]["completion"] == "bad \ud800 \x00"
    assert len(rows[1]["completion"]) == 4096 and rows[1]["completion_chars"] == 10_004

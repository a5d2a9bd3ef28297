"""Issue 19 item 2: rewards that run model-written code are scored in worker processes by default (workers: auto),
each worker under a memory limit; trusted rewards stay in-process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import yaml

from aegir.errors import InputError
from aegir.rl.rewards import AUTO_WORKERS, RewardComposer, RewardSpec, runs_untrusted_code
from tests.unit import reward_fixtures  # noqa: F401 - registers the test_* rewards


def spec(components: list[str], **extra: object) -> dict:
    return {"components": {name: {"weight": 1.0} for name in components}, **extra}


def test_sql_exec_is_registered_as_untrusted_and_v42_defaults_to_a_pool() -> None:
    import aegir.tasks.commerce.rewards  # noqa: F401 - registers sql_exec

    assert runs_untrusted_code("sql_exec") and not runs_untrusted_code("push_rules")
    reward = yaml.safe_load((Path(__file__).parents[2] / "conf" / "reward" / "v42.yaml").read_text())
    parsed = RewardSpec.from_config(reward)
    assert parsed.workers == AUTO_WORKERS > 0 and parsed.untrusted_names == ["sql_exec"]
    assert parsed.memory_mb is not None and parsed.timeout_s > 0


def test_auto_stays_in_process_for_trusted_rewards() -> None:
    assert RewardSpec.from_config(spec(["test_const_half"], workers="auto")).workers == 0
    assert RewardSpec.from_config(spec(["test_untrusted_echo"])).workers == AUTO_WORKERS  # no key: auto
    assert RewardSpec.from_config(spec(["test_const_half", "test_untrusted_echo"], workers="auto")).workers == 2


def test_auto_pool_scores_untrusted_rewards_outside_the_training_process() -> None:
    with RewardComposer(spec(["test_untrusted_echo"], workers="auto", timeout_s=5.0)) as composer:
        scored = composer.score([{}], ["x"])
        assert len(composer.worker_processes) == AUTO_WORKERS
    assert scored.errors == 0
    assert float(scored.total[0]) != pytest.approx(float(os.getpid() % 1000) / 1000)


def test_explicit_in_process_untrusted_reward_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aegir.rl.rewards"):
        RewardSpec.from_config(spec(["test_untrusted_echo"], workers=0))
    assert "test_untrusted_echo" in caplog.text and "without a hard timeout" in caplog.text


@pytest.mark.parametrize("bad", [0, -5, 1.5, "lots", True])
def test_memory_mb_is_validated(bad: object) -> None:
    with pytest.raises(InputError, match=r"reward\.memory_mb"):
        RewardSpec.from_config(spec(["test_const_half"], memory_mb=bad))


def test_worker_memory_limit_turns_a_runaway_allocation_into_an_error() -> None:
    config = spec(["test_allocate"], workers=1, timeout_s=20.0, memory_mb=256)
    with RewardComposer(config) as composer:
        scored = composer.score([{"mb": 1024}, {"mb": 16}], ["a", "b"])
    assert scored.errors == 1 and scored.total.tolist() == [0.0, 1.0]
    assert "MemoryError" in scored.error_samples[0]["error"]


def test_auto_pools_only_the_untrusted_components() -> None:
    config = spec(["test_const_half", "test_untrusted_echo"], workers="auto", timeout_s=5.0)
    parsed = RewardSpec.from_config(config)
    assert parsed.runs_in_pool("test_untrusted_echo") and not parsed.runs_in_pool("test_const_half")
    assert RewardSpec.from_config({**config, "workers": 2}).runs_in_pool("test_const_half")  # explicit N: all
    with RewardComposer(parsed) as composer:
        scored = composer.score([{}, {}], ["x", "y"])
    assert scored.errors == 0 and scored.components["test_const_half"].tolist() == [0.5, 0.5]
    echo = scored.components["test_untrusted_echo"].tolist()
    assert all(value != pytest.approx(os.getpid() % 1000 / 1000) for value in echo)

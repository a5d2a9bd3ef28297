"""`python -m aegir.config explain`: a key's type, default, range and meaning without opening the code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aegir.config.explain import explain
from aegir.errors import InputError
from tests.conftest import ROOT


def test_a_key_shows_type_range_default_and_meaning() -> None:
    text = explain("algo.kl_coef")
    assert text.splitlines()[0] == "algo.kl_coef  (float, >= 0)"
    assert "default [algo=grpo]: 0.0" in text and "KL penalty" in text


def test_a_key_shared_by_options_lists_each_default() -> None:
    text = explain("algo.lr")
    for option in ("classify", "grpo", "lm", "sft"):
        assert f"default [algo={option}]:" in text
    assert "[algo=classify] peak learning rate of the head" in text


def test_a_trainer_key_with_one_default_says_where_it_holds() -> None:
    assert "default: 360 (in cpu, ddp, ddp_sim, gpu)" in explain("trainer.max_steps")


def test_a_group_lists_its_options_and_keys() -> None:
    text = explain("algo")
    assert text.startswith("algo: options classify, grpo, lm, sft")
    assert "algo.group_size" in text and "[grpo]" in text


def test_an_option_lists_its_keys_with_defaults() -> None:
    text = explain("model=hnet_nano")
    assert "model.target_compression  (list[float])" in text and "default: [2.0, 2.0]" in text


def test_a_top_level_key_of_config_yaml() -> None:
    text = explain("seed")
    assert text.startswith("seed  (int, >= 0)") and "default: 42" in text


def test_an_unknown_key_suggests_the_close_ones() -> None:
    with pytest.raises(InputError, match=r"algo.kl_cof: no such config key; did you mean algo.kl_coef"):
        explain("algo.kl_cof")


def test_the_command_exits_2_with_one_line_on_an_unknown_key() -> None:
    result = subprocess.run([sys.executable, "-m", "aegir.config", "explain", "trainer.max_stepz"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "trainer.max_stepz: no such config key" in result.stderr

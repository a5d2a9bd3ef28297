"""Every out-of-range value that once crashed with a traceback or silently ran wrong (issue 19, item 5) is refused
by the config check with one line naming the key, before anything runs; a sample goes through the CLI for exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegir.config import validate
from aegir.errors import InputError
from tests.conftest import run_cli

GRPO = ["+experiment=grpo_toy"]

# (overrides, the key the one-line error must name)
OUT_OF_RANGE = [
    ([*GRPO, "algo.group_size=0"], "algo.group_size"),
    ([*GRPO, "algo.group_size=1"], "algo.group_size"),  # no group to compare with: every advantage would be 0
    ([*GRPO, "algo.prompts_per_step=0"], "algo.prompts_per_step"),
    ([*GRPO, "algo.num_iterations=0"], "algo.num_iterations"),
    ([*GRPO, "algo.max_completion_length=0"], "algo.max_completion_length"),
    ([*GRPO, "algo.top_p=0"], "algo.top_p"),
    ([*GRPO, "algo.temperature=0"], "algo.temperature"),  # would silently turn sampling greedy
    ([*GRPO, "algo.temperature=nan"], "algo.temperature"),
    ([*GRPO, "algo.clip_eps_low=-0.1"], "algo.clip_eps_low"),
    ([*GRPO, "algo.micro_batch_size=0"], "algo.micro_batch_size"),  # was clamped to 1
    ([*GRPO, "algo.lr=0"], "algo.lr"),
    ([*GRPO, "algo.lr=-0.001"], "algo.lr"),
    (["algo.lr=0"], "algo.lr"),
    (["algo.lr=-1e-3"], "algo.lr"),
    (["algo.lr=inf"], "algo.lr"),
    (["algo.lr=nan"], "algo.lr"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval"),
    (["trainer.max_steps=0"], "trainer.max_steps"),
    (["task.seq_len=0"], "task.seq_len"),
    (["task.batch_size=0"], "task.batch_size"),  # trained on nothing
    (["model.n_layers=0"], "model.n_layers"),
    (["model.d_model=0"], "model.d_model"),
]


@pytest.mark.parametrize("overrides,key", OUT_OF_RANGE, ids=[" ".join(o[-1:]) for o, _ in OUT_OF_RANGE])
def test_out_of_range_value_is_one_line_naming_the_key(compose, overrides: list[str], key: str) -> None:
    with pytest.raises(InputError) as info:
        validate(compose(overrides, fast=overrides[:1] != GRPO))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {key}:"), message


@pytest.mark.slow
@pytest.mark.parametrize("override", ["algo.lr=inf", "algo.group_size=1"])
def test_cli_refuses_out_of_range_with_exit_2(tmp_path: Path, override: str) -> None:
    args = [*(GRPO if "group_size" in override else []), override, f"paths.output_root={tmp_path}/out"]
    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and override.split("=")[0] in lines[0], result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("metadata.json"))

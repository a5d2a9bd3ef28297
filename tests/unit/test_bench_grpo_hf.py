"""`python -m aegir.bench grpo_hf`: Aegir's GRPO step vs TRL's GRPOTrainer on the tiny local Qwen3.

Tiny settings (one prompt, G=2, 4 new tokens, one step) so each half takes seconds. The TRL half needs the `compare`
extra and is skipped without it (CI does not install it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from aegir.bench import (COMPARE_HINT, build_parser, format_grpo_hf_table, grpo_hf_records, main, run_aegir_grpo,
                         run_trl_grpo, summarize_steps)

TINY = ["grpo_hf", "--prompts", "1", "--group-size", "2", "--max-completion-length", "4", "--steps", "1",
        "--warmup", "0"]
PHASES = ("generate", "sampler", "reward", "update", "fwd", "step")


@pytest.fixture(autouse=True)
def _keep_threads():
    """The bench sets torch's thread count for timing; give the rest of the session its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _check_step(step: dict[str, float], group: int, max_new: int) -> None:
    for phase in PHASES:
        assert step[phase] > 0, phase
    assert step.get("logprob", 0.0) == 0.0  # num_iterations 1 and beta 0: no no-grad log-prob pass
    assert step["sampler"] <= step["generate"] and step["fwd"] <= step["update"]
    assert step["generate"] + step["update"] <= step["step"]
    assert 1 <= step["tokens"] <= group * max_new
    assert step["threads"] == 1


def test_aegir_half_runs_one_step(hf_tiny_dir: Path) -> None:
    args = build_parser().parse_args(TINY)
    records = grpo_hf_records(args.task, args.prompts, args.seed)
    assert len(records) == 1 and isinstance(records[0]["prompt"], list)
    steps = run_aegir_grpo(hf_tiny_dir, records, args)
    assert len(steps) == 1
    _check_step(steps[0], group=2, max_new=4)
    summary = summarize_steps(steps, warmup=0)
    assert summary["tokens_per_s"] > 0 and summary["gen_tokens_per_s"] > 0
    assert summary["step"] == pytest.approx(summary["generate"] + summary["reward"] + summary["logprob"]
                                            + summary["update"] + summary["other"])
    assert "aegir" in format_grpo_hf_table({"aegir": summary})


def test_without_trl_exits_2_with_the_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(TINY)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [COMPARE_HINT]
    assert 'pip install -e ".[compare]"' in err[0]


def test_frameworks_option_is_validated() -> None:
    assert build_parser().parse_args([*TINY, "--frameworks", "trl,aegir"]).frameworks == ["trl", "aegir"]
    with pytest.raises(SystemExit):
        build_parser().parse_args([*TINY, "--frameworks", "verl"])


@pytest.mark.skipif(importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None,
                    reason='needs the compare extra: pip install -e ".[compare]"')
def test_trl_half_runs_one_step(hf_tiny_dir: Path) -> None:
    args = build_parser().parse_args(TINY)
    records = grpo_hf_records(args.task, args.prompts, args.seed)
    steps = run_trl_grpo(hf_tiny_dir, records, args)
    assert len(steps) == 1
    _check_step(steps[0], group=2, max_new=4)
    # TRL's own step_time is training_step without the optimizer step: within the step we time
    assert 0 < steps[0]["trl_step_time"] <= steps[0]["step"]
    table = format_grpo_hf_table({"aegir": summarize_steps(steps, 0), "trl": summarize_steps(steps, 0)})
    assert "speed-up TRL/Aegir" in table and "1.00x" in table

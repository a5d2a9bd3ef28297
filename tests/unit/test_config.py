"""Every config composes and validates; misspelt keys and wrong types fail with one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aegir.config import allowed_keys, validate
from aegir.errors import InputError
from tests.conftest import ROOT, run_cli

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def test_there_are_experiments() -> None:
    assert "pretrain_smoke" in EXPERIMENTS and "pretrain_two_stage" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(compose, experiment: str) -> None:
    cfg = validate(compose([f"+experiment={experiment}"], fast=False))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["name"] and resolved["model"]["arch"] in ("rwkv7", "hf")
    for stage in resolved["stages"].values():  # stage overrides compose too
        validate(compose([f"+experiment={experiment}", *stage["overrides"]], fast=False))


@pytest.mark.parametrize("group,options", [
    ("model", ["rwkv7_nano", "rwkv7_tiny", "rwkv7_small"]), ("arm", ["full", "no_ontology", "no_schema"]),
    ("trainer", ["cpu", "gpu", "ddp", "ddp_sim"]), ("logger", ["tensorboard", "none"]),
])
def test_every_group_option_validates(compose, group: str, options: list[str]) -> None:
    for option in options:
        cfg = validate(compose([f"{group}={option}"]))
        assert cfg is not None


def test_defaults_are_the_cpu_nano_pretraining(compose) -> None:
    cfg = validate(compose(fast=False))
    assert (cfg.model.name, cfg.task.name, cfg.trainer.name, cfg.arm.name) == ("rwkv7_nano", "pretrain", "cpu",
                                                                               "full")
    assert cfg.callbacks.checkpoint.monitor == "val/bpb"


@pytest.mark.parametrize("override,key,fragment", [
    ("+trainer.max_stepz=3", "trainer.max_stepz", "allowed keys here: accelerator"),
    ("trainer.max_steps=abc", "trainer.max_steps", "could not be converted to Integer"),
    ("+foo=1", "foo", "unknown top-level key"),
    ("arm.name=bogus", "arm.name", "not one of: full, no_ontology, no_schema"),
    ("+task.data.n_docs=3", "task.data.n_docs", "allowed keys here: n_documents, path, source, val_fraction"),
    ("+gates.g.metric=val/bpb", "gates.g.op", None),
    ("trainer.precision=fp8", "trainer.precision", "not one of: 32-true"),
    ("objective.mode=up", "objective.mode", "not one of: min, max"),
    ("task.data.source=web", "task.data.source", "not one of: synthetic, files"),
])
def test_bad_values_name_the_key(compose, override: str, key: str, fragment: str | None) -> None:
    if key == "gates.g.op":  # a gate with an invalid operator
        cfg = compose(["+gates.g.metric=val/bpb", "+gates.g.op=between"])
        fragment = "not one of"
    else:
        cfg = compose([override])
    with pytest.raises(InputError) as info:
        validate(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {key}:"), message
    assert fragment in message


def test_allowed_keys_walks_nested_sections() -> None:
    assert "max_steps" in allowed_keys("trainer")
    assert allowed_keys("task.data") == ["n_documents", "path", "source", "val_fraction"]
    assert "d_model" in allowed_keys("model")
    assert "stages" in allowed_keys("")


@pytest.mark.parametrize("args,fragment", [
    (["trainer.max_stepz=10"], "config error: trainer.max_stepz: unknown key; allowed keys here:"),
    (["trainer.max_steps=ten"], "config error: trainer.max_steps:"),
    (["model=rwkv7_huge"], "config error: model=rwkv7_huge: no such config; available: hf, hf_tiny, hnet_base, hnet_nano, "),
    (["+experiment=nope"], "config error: experiment=nope: no such config"),
])
def test_cli_input_errors_exit_2_with_one_line_and_leave_no_run(tmp_path: Path, args: list[str],
                                                                fragment: str) -> None:
    result = run_cli([*args, f"paths.output_root={tmp_path}/out"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]
    runs = list((tmp_path / "out").rglob("metadata.json")) if (tmp_path / "out").exists() else []
    assert not runs
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] if (tmp_path / "out").exists() else []
    assert not leftovers, leftovers

"""Run directories are unique even when runs start in the same second (microseconds + a per-process id)."""

from __future__ import annotations

import re

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from aegir import hydra_resolvers
from aegir.run.compose import CONF_DIR


def _run_dir() -> str:
    hydra_resolvers.register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["seed=5"], return_hydra_config=True)
        from hydra.core.utils import setup_globals

        setup_globals()  # registers Hydra's `now` resolver, as a real launch does
        return str(OmegaConf.select(cfg, "hydra.run.dir"))


def test_run_dir_layout_and_uniqueness() -> None:
    first, second = _run_dir(), _run_dir()
    pattern = r"outputs/runs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d\.\d{6}-[0-9a-f]+_pretrain_rwkv7_nano_full_seed5"
    assert re.fullmatch(pattern, first), first
    assert first != second


def test_uid_is_cached_per_config_and_differs_between_configs() -> None:
    hydra_resolvers.register()
    a = OmegaConf.create({"x": "${aegir_uid:}", "y": "${x}"})
    b = OmegaConf.create({"x": "${aegir_uid:}"})
    assert a.x == a.x == a.y
    assert a.x != b.x

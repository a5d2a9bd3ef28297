"""Config composition: conf/config.yaml plus overrides, inside a running Hydra app or standalone.

Multi-stage runs, the sweep and the audit compose configs from override lists; `run.py` gets its config from
Hydra, and `hydra_overrides` reads back the overrides it was given so that stages can be re-composed from them.
"""

from __future__ import annotations

from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from aegir import hydra_resolvers
from aegir.config.groups import CONF_DIR



def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose conf/config.yaml with overrides, inside the running Hydra app or standalone."""
    hydra_resolvers.register()
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def hydra_overrides() -> list[str]:
    """The command-line overrides of the running Hydra app (none outside one)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []

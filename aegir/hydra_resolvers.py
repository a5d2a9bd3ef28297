"""OmegaConf resolvers the configs use; registered by the entry points before Hydra composes."""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf


def _uid() -> str:
    """Process id + random hex: with the microsecond timestamp it keeps run directories unique when two runs
    (or two sweep workers) start in the same second, which Hydra's `${now:}` alone does not (hydra#1607)."""
    return f"{os.getpid():x}{secrets.token_hex(2)}"


def _arm_tag(task: str, source: str, arm: str) -> str:
    """`_<arm>` for a pretraining run on the synthetic corpus (the only runs a corpus arm changes), else nothing:
    the arm's name is then part of run directory names (`…_full_seed42`, `…_no_ontology_seed42`)."""
    return f"_{arm}" if task == "pretrain" and source == "synthetic" else ""


def register() -> None:
    if not OmegaConf.has_resolver("aegir_uid"):
        # use_cache: resolved once per config object, so every `${hydra:run.dir}` of one run agrees.
        OmegaConf.register_new_resolver("aegir_uid", _uid, use_cache=True)
    if not OmegaConf.has_resolver("aegir_arm"):
        OmegaConf.register_new_resolver("aegir_arm", _arm_tag)

"""The run directory: its name, its metadata.json (who the run is, where it came from, how it is doing), and the
clean-up after an input error.

Single- and multi-stage runs write metadata.json through one builder, `run_metadata`: the fields that tell them
apart come from the caller, the identity and provenance fields from here.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from aegir import hydra_resolvers
from aegir.rundir import RunPaths, config_hash, git_state, hardware, package_versions, update_json


def run_dir_for(cfg: DictConfig) -> Path:
    """Hydra's output directory inside a Hydra app; elsewhere a fresh, unique one under `paths.output_root`."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S.%f")
    root = OmegaConf.select(cfg, "paths.output_root", default="outputs")
    name = OmegaConf.select(cfg, "name", default="run")
    return Path(root) / "runs" / f"{stamp}-{hydra_resolvers._uid()}_{name}_seed{cfg.get('seed', 0)}"


def remove_leftovers(run_dir: Path) -> None:
    """After a config/input error, remove what Hydra wrote for this run (.hydra/, run.log) so no directory
    that looks like a run is left behind. Never touches a directory that already holds a run."""
    if not run_dir.is_dir() or (run_dir / "metadata.json").exists():
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    for log_file in run_dir.glob("*.log"):
        log_file.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty: something else lives there (e.g. hydra.run.dir=.)


def is_rank_zero() -> bool:
    """Before the Trainer exists, DDP ranks > 0 (launched by Lightning) are recognised by their environment."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0 and \
        int(os.environ.get("NODE_RANK", "0")) == 0


def now() -> str:
    """The time stamps of metadata.json: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_metadata(paths: RunPaths, cfg: DictConfig, overrides: Sequence[str], kind: Mapping[str, Any],
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """metadata.json of a run that starts now: its identity (id, directory, name, status `running`), the fields of
    its `kind` (a stage's seeds, model and data; a multi-stage run's plan), its provenance (resolved config and its
    hash, overrides, command, git state, package versions, hardware), then `extra` (a sweep's trial)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    return {
        "run_id": paths.root.name, "run_dir": str(paths.root), "name": cfg.name, "status": "running",
        **kind,
        "config": resolved, "config_hash": config_hash(resolved), "overrides": list(overrides),
        "command": sys.argv, "git": git_state(), "versions": package_versions(), "hardware": hardware(),
        **(extra or {}),
    }


def mark_ended(paths: RunPaths, status: str, **fields: Any) -> None:
    """Record in metadata.json that the run ended (`finished`, `failed`, `pruned`), when, and any `fields`."""
    update_json(paths.metadata, status=status, ended_at=now(), **fields)

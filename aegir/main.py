"""run(cfg) -> objective: the steps of a run, in order.

`run.py` (Hydra) and the sweep driver both call `run`. Each step is one call into `aegir.run` (the run directory
and its metadata, the stage runner, the trainer, the summary and gates) or `aegir.audit`. One stage by default;
`stages:` chains several, each in its own sub-directory, a stage initialised from an earlier stage's best
checkpoint. Errors end the command with the status `aegir.exit_status` gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from aegir import hydra_resolvers
from aegir.audit import require_passing_audit
from aegir.config import validate
from aegir.errors import InputError
from aegir.run.compose import hydra_overrides
from aegir.run.directory import remove_leftovers, run_dir_for
from aegir.run.single import run_single
from aegir.run.stages import run_stages
from aegir.run.summary import raise_if_required_gates_failed, report
from aegir.rundir import RunPaths


def run(cfg: DictConfig, overrides: Sequence[str] | None = None, *, run_dir: Path | None = None,
        callbacks: Sequence[Any] = (), extra_metadata: dict[str, Any] | None = None) -> float:
    """Run the experiment a composed config describes; return its objective value.

    `overrides` are the command-line overrides the config was composed with (read from Hydra when omitted);
    multi-stage experiments re-compose each stage from them plus the stage's own overrides. Drivers such as the
    sweep pass their own `run_dir`, extra Lightning `callbacks` (pruning) and `extra_metadata` (the trial).
    """
    hydra_resolvers.register()
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    extras = {"callbacks": list(callbacks), "extra_metadata": dict(extra_metadata or {})}
    try:
        cfg = validate(cfg)  # 1. the config: one line and exit 2 for a wrong key or value
        overrides = list(hydra_overrides() if overrides is None else overrides)
        if cfg.audit.required:  # 2. the reward audit gate, before any training
            require_passing_audit(cfg)
        if cfg.stages:  # 3. fit and finalize: a chain of stages, or one
            result = run_stages(cfg, overrides, RunPaths(run_dir), **extras)
        else:
            result = run_single(cfg, RunPaths(run_dir), overrides=overrides, **extras)
    except InputError:
        remove_leftovers(run_dir)  # bad input leaves no directory that looks like a run
        raise
    report(result)  # 4. say where the results are
    raise_if_required_gates_failed(result)  # 5. gates.required: a failed gate fails the command (exit 3)
    return result.objective

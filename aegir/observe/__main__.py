"""Run the observatory after the fact on checkpoints of a finished run (docs/observatory.md, After the fact).

    python -m aegir.observe RUN_DIR                          # best.ckpt (default)
    python -m aegir.observe RUN_DIR --checkpoint last best   # several, in this order
    python -m aegir.observe RUN_DIR --checkpoint path/to/other.ckpt

The loop is rebuilt from the run's resolved config (metadata.json) with the run's seed, so its freshly built weights
are the run's initial weights (drift from init works even when training ran without the observatory); each
checkpoint's weights are loaded and every instrument runs on them, appending to the run's observe/ files (rows
marked `"source": "posthoc:<checkpoint>"`) and writing TensorBoard events into its tb/. A multi-stage run is
processed stage by stage. Gradient norms and update ratios need a training step and are left out.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aegir.errors import InputError
from aegir.exit_status import FINISHED, exit_status
from aegir.rundir import METADATA, TB_DIR, RunPaths, read_history, read_json

log = logging.getLogger("aegir")


def _observatory_config(run_cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's own observatory settings when it had them switched on, else the defaults of
    `callbacks=observatory` (the run directory's config may predate the observatory)."""
    from omegaconf import OmegaConf

    from aegir.run.compose import compose_config

    defaults = OmegaConf.to_container(compose_config(["callbacks=observatory"]).callbacks.observatory, resolve=True)
    own = (run_cfg.get("callbacks") or {}).get("observatory")
    merged = OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.create(own or {}))
    merged.enabled = True
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


def _checkpoint_path(paths: RunPaths, name: str) -> Path:
    path = {"best": paths.best_ckpt, "last": paths.last_ckpt}.get(name, Path(name))
    if not path.is_file():
        raise InputError(f"--checkpoint {name}: no checkpoint at {path}")
    return path


def observe_stage(run_dir: Path, checkpoints: Sequence[str], tensorboard: bool = True) -> list[int]:
    """Every instrument on each checkpoint of one (single-stage) run directory; returns the steps observed."""
    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from aegir.loops.factory import build_stage
    from aegir.observe.observatory import Observatory, Sink

    paths = RunPaths(run_dir)
    metadata = read_json(paths.metadata)
    run_cfg = metadata.get("config")
    if not isinstance(run_cfg, dict):
        raise InputError(f"{paths.metadata}: no resolved config; is {run_dir} an Aegir run directory?")
    ckpt_paths = [_checkpoint_path(paths, name) for name in checkpoints]
    obs_cfg = _observatory_config(run_cfg)
    cfg = OmegaConf.create({k: v for k, v in run_cfg.items() if k != "hydra"})
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = build_stage(cfg, paths).module  # seeded: the run's initial weights
    task = OmegaConf.to_container(cfg.task, resolve=True)
    observatory = Observatory(obs_cfg, paths.root, task, int(cfg.data_seed), module)  # type: ignore[arg-type]
    observatory.prepare(module, 0, paths.metadata)
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(paths.root / TB_DIR))
    sink = Sink((), writer)
    history = read_history(paths.history)
    steps = []
    try:
        for name, ckpt_path in zip(checkpoints, ckpt_paths):
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            module.load_state_dict(checkpoint["state_dict"], strict=getattr(module, "strict_loading", True))
            step = int(checkpoint.get("global_step", 0))
            # The loop's metrics of that checkpoint: each one's last value logged at or before its step.
            metrics = {metric: [v for s, v in series if s <= step][-1] for metric, series in history.items()
                       if any(s <= step for s, _ in series)}
            observatory.snapshot(module, step, 0, metrics, sink, source=f"posthoc:{name}")
            steps.append(step)
            print(f"observed {ckpt_path} (step {step})")
        observatory.finish(sink)
    finally:
        if writer is not None:
            writer.close()
    return steps


def observe_run(run_dir: Path, checkpoints: Sequence[str], tensorboard: bool = True) -> None:
    if not (run_dir / METADATA).is_file():
        raise InputError(f"{run_dir}: not a run directory (no {METADATA})")
    metadata = read_json(run_dir / METADATA)
    if metadata.get("kind") == "multi_stage":
        for stage in metadata.get("stages", []):
            stage_dir = Path(stage["dir"])
            stage_dir = stage_dir if stage_dir.is_absolute() else run_dir / stage_dir
            print(f"stage {stage.get('name')}:")
            observe_stage(stage_dir, checkpoints, tensorboard)
    else:
        observe_stage(run_dir, checkpoints, tensorboard)
    print(f"observatory records: {run_dir}/observe/ (and per stage); tensorboard --logdir {run_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegir.observe", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory (or a multi-stage run's)")
    parser.add_argument("--checkpoint", nargs="+", default=["best"],
                        help="best | last | a checkpoint path; several are observed in the order given (best)")
    parser.add_argument("--no-tensorboard", action="store_true", help="write the observe/ files only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        observe_run(args.run_dir, args.checkpoint, tensorboard=not args.no_tensorboard)
    except InputError as err:
        print(f"aegir.observe: {err}", file=sys.stderr)
        return exit_status(err)
    return FINISHED


if __name__ == "__main__":
    sys.exit(main())

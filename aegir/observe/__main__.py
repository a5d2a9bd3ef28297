"""Run the observatory after the fact on checkpoints of a finished run (docs/observatory.md, After the fact).

    python -m aegir.observe RUN_DIR                          # best.ckpt (default)
    python -m aegir.observe RUN_DIR --checkpoint last best   # several, in this order
    python -m aegir.observe RUN_DIR --checkpoint path/to/other.ckpt

The loop is rebuilt from the run's resolved config (metadata.json) with the run's seed, so its freshly built weights
are the run's initial weights (drift from init works even when training ran without the observatory); each
checkpoint's weights are loaded and every instrument runs on them, appending to the run's observe/ files (rows
marked `"source": "posthoc:<checkpoint>"`) and writing TensorBoard events into its tb/. A multi-stage run is
processed stage by stage: `--checkpoint best` is each stage's own best.ckpt, and each stage's records go to
`stages/<k>_<name>/observe/` (found relative to RUN_DIR, so a moved or copied run directory works). Gradient norms
and update ratios need a training step and are left out.
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
from aegir.observe.config import ObservatoryConfig
from aegir.rundir import METADATA, STAGES, TB_DIR, RunPaths, read_history, read_json

log = logging.getLogger("aegir")


def _observatory_config(run_cfg: dict[str, Any]) -> ObservatoryConfig:
    """The run's own observatory settings over the defaults of `callbacks=observatory` (the run directory's config
    may predate the observatory), switched on, as the typed section."""
    from omegaconf import OmegaConf

    from aegir.config.validate import section_object
    from aegir.run.compose import compose_config

    callbacks = OmegaConf.to_container(compose_config(["callbacks=observatory"]).callbacks, resolve=True)
    own = (run_cfg.get("callbacks") or {}).get("observatory")
    merged = OmegaConf.merge(OmegaConf.create(callbacks), OmegaConf.create({"observatory": own or {}}))
    merged.observatory.enabled = True
    return section_object("callbacks", merged).observatory


def _checkpoint_path(paths: RunPaths, name: str) -> Path:
    path = {"best": paths.best_ckpt, "last": paths.last_ckpt}.get(name, Path(name))
    if not path.is_file():
        raise InputError(f"--checkpoint {name}: no checkpoint at {path}")
    return path


def _moved_parent(pretrained: Any, run_root: Path | None) -> Any:
    """A stage's `model.pretrained` (an earlier stage's best.ckpt, recorded as an absolute path) found again under
    `run_root` when the multi-stage run directory was moved or copied; unchanged otherwise."""
    if not pretrained or run_root is None or Path(str(pretrained)).is_file():
        return pretrained
    parts = Path(str(pretrained)).parts
    if STAGES not in parts:
        return pretrained
    moved = run_root.joinpath(*parts[len(parts) - 1 - parts[::-1].index(STAGES):])
    return str(moved) if moved.is_file() else pretrained


def observe_stage(run_dir: Path, checkpoints: Sequence[str], tensorboard: bool = True,
                  run_root: Path | None = None) -> list[int]:
    """Every instrument on each checkpoint of one (single-stage) run directory, or of one stage of the multi-stage
    run at `run_root`; returns the steps observed."""
    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from aegir.config.validate import section_object
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
    moved = _moved_parent(cfg.model.get("pretrained"), run_root)
    if moved != cfg.model.get("pretrained"):
        cfg.model.pretrained = moved
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = build_stage(cfg, paths).module  # seeded: the run's initial weights
    observatory = Observatory(obs_cfg, paths.root, section_object("task", cfg.task), int(cfg.data_seed), module)
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
        dirs = [run_dir / STAGES / f"{stage['index']}_{stage['name']}" for stage in metadata.get("stages", [])]
        missing = [str(d) for d in dirs if not (d / METADATA).is_file()]
        if missing or not dirs:
            raise InputError(f"{run_dir}: multi-stage run without the stage directories it lists "
                             f"({', '.join(missing) or 'none listed'})")
        for stage, stage_dir in zip(metadata["stages"], dirs):
            print(f"stage {stage['name']}:")
            observe_stage(stage_dir, checkpoints, tensorboard, run_root=run_dir)
        where = ", ".join(f"{d}/observe/" for d in dirs)
    else:
        observe_stage(run_dir, checkpoints, tensorboard)
        where = f"{run_dir}/observe/"
    print(f"observatory records: {where}; tensorboard --logdir {run_dir}")


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

"""What the framework costs: `python -m aegir.bench overhead` and `python -m aegir.bench startup`.

overhead: the default pretraining (`make run`'s config, `--steps` optimizer steps) trained twice over, alternating,
in one process: once as a bare PyTorch loop (the same data preparation, model, AdamW + schedule, batches, validation
passes at the same interval and final evaluation -- what a hand-written script would do), once through
`aegir.main.run` (Hydra config, config check, Lightning Trainer, history.jsonl + TensorBoard logging, checkpoints at
the default interval, metadata and summary). Both sides see the same load; the ratio framework / bare is the
framework's overhead (the goal is <= 1.05). The corpus is prepared once before timing and handed to both sides
(its preparation is the task's cost, not the framework's, and would dominate a short run); Python start-up and
imports are outside both sides too: `startup` measures them.

startup: the wall time of `python run.py --help` and of a config error (`python run.py trainer.max_stepz=1`),
each repeated, as a user sees them (the goal is <= 2 s).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aegir.bench_stats import emit, measure, timing_fields

ROOT = Path(__file__).resolve().parents[1]


def _compose(overrides: Sequence[str]) -> Any:
    from aegir.run.compose import compose_config

    return compose_config(list(overrides))


def bare_pretraining(overrides: Sequence[str]) -> float:
    """The default pretraining as a hand-written PyTorch loop; returns the final val/bpb (to check both sides
    learned the same thing)."""
    import math

    import torch

    from aegir.config.validate import section_object, validate
    from aegir.loops.lm import (
        LN2,
        adamw_with_schedule,
        evaluate_windows,
        lm_logits,
        next_byte_loss,
    )
    from aegir.models.build import build_model
    from aegir.tasks.pretrain import task as task_module
    from aegir.tasks.pretrain.windows import RandomWindowBatches

    cfg = validate(_compose(overrides))
    torch.manual_seed(cfg.seed)
    task = section_object("task", cfg.task)
    data = task_module.prepare_pretrain_data(task, arm=cfg.arm.name, data_seed=cfg.data_seed)
    model = build_model(section_object("model", cfg.model))
    steps, interval = int(cfg.trainer.max_steps), int(cfg.trainer.val_check_interval)
    optim = adamw_with_schedule(model, section_object("algo", cfg.algo), steps)
    optimizer, schedule = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    clip = float(cfg.algo.grad_clip or 0.0)
    batches = RandomWindowBatches(data.train, task.seq_len, task.batch_size, cfg.seed)
    model.train()
    for step, batch in zip(range(1, steps + 1), batches):
        loss = next_byte_loss(lm_logits(model, batch[:, :-1]), batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        if step % interval == 0:
            evaluate_windows(model, data.val_windows, task.val_batch_size)
    bpb = float(evaluate_windows(model, data.val_windows, task.val_batch_size).mean()) / LN2
    return bpb if math.isfinite(bpb) else float("nan")


def framework_pretraining(overrides: Sequence[str], out: Path) -> float:
    """The same run through Aegir (Hydra config, Lightning, logging, checkpoints); returns its final val/bpb."""
    from aegir.main import run

    return float(run(_compose([*overrides, f"paths.output_root={out}"]), list(overrides)))


def _prepare_once() -> None:
    """Make `prepare_pretrain_data` return the corpus it built the first time for the same arguments, for both
    sides (the factory looks the function up on its module at call time)."""
    import aegir.tasks.pretrain.task as task_module

    build, cache = task_module.prepare_pretrain_data, {}

    def cached(task: Any, arm: str, data_seed: int) -> Any:
        key = (repr(task), arm, data_seed)
        if key not in cache:
            cache[key] = build(task, arm=arm, data_seed=data_seed)
        return cache[key]

    task_module.prepare_pretrain_data = cached  # type: ignore[assignment]


def bench_overhead(args: Any) -> None:
    import torch


    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [f"trainer.max_steps={args.steps}", "trainer.enable_progress_bar=false", *args.overrides]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**6))
        sides = {"bare": lambda: results.__setitem__("bare", bare_pretraining(overrides)),
                 "aegir": lambda: results.__setitem__(
                     "aegir", framework_pretraining(overrides, Path(tmp) / f"run{next(counter)}"))}
        _prepare_once()
        stats = measure(sides, args.repeats, warmup=1)  # the warm-up round also builds the corpus
    bare, aegir = stats["bare"], stats["aegir"]
    emit(bench="overhead", steps=args.steps, threads=torch.get_num_threads(), repeats=args.repeats,
         **timing_fields("bare", bare), **timing_fields("aegir", aegir), ratio_median=aegir["median"] / bare["median"],
         ratio_min=aegir["min"] / bare["min"], bare_val_bpb=results["bare"], aegir_val_bpb=results["aegir"])


def bench_startup(args: Any) -> None:

    commands = {"help": [sys.executable, str(ROOT / "run.py"), "--help"],
                "config_error": [sys.executable, str(ROOT / "run.py"), "trainer.max_stepz=1"]}

    def call(command: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(command, cwd=tempfile.gettempdir(), capture_output=True, check=False)

    for name, stats in measure({name: call(cmd) for name, cmd in commands.items()}, args.repeats).items():
        emit(bench="startup", command=name, median_s=stats["median"], min_s=stats["min"], max_s=stats["max"],
             spread=stats["spread"], n=int(stats["n"]))


def add_parsers(benches: Any) -> None:
    """The `overhead` and `startup` subcommands of `python -m aegir.bench`."""
    overhead = benches.add_parser("overhead", help="framework (Hydra + Lightning + logging + checkpoints) vs a "
                                                   "bare PyTorch loop on the default pretraining, same process")
    overhead.add_argument("--steps", type=int, default=120, help="optimizer steps per run (validation every 60)")
    overhead.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    overhead.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    overhead.add_argument("overrides", nargs="*", help="extra Hydra overrides for both sides")
    overhead.set_defaults(func=bench_overhead)
    startup = benches.add_parser("startup", help="wall time of `run.py --help` and of a config error")
    startup.add_argument("--repeats", type=int, default=5)
    startup.set_defaults(func=bench_startup)

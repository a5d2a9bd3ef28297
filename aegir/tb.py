"""`python -m aegir.tb PATH... [--print] [TENSORBOARD ARGS]`: TensorBoard over run, multirun and sweep directories,
with run names a reader can tell apart.

`tensorboard --logdir outputs` names a run by its path, `multiruns/2026-12-05/08-06-14.123390-3c58fec1_grpo_toy/
0_grpo_toy_seed42/tb`, which the run selector truncates with the useful part at the end. This command finds every
run directory below the given paths (the run directory contract: metadata.json, tb/), names each by what sets it
apart, and starts TensorBoard with `--logdir_spec NAME:PATH,...`, so the run directories keep their contract while
the selector reads:

    grpo_toy/seed42/.                     a run or a multirun job: configuration / seed
    grpo_toy/seed42/final                 its HParams session and final (best-checkpoint) values
    grpo_toy kl_coef=0.02/seed42/.        a configuration among several: the parameters that set it apart
    toy_grid/t3 group_size=8 kl_coef=0/.  trial 3 of the study toy_grid, with its parameters
    grpo_toy/mean over seeds/.            the seed aggregate of the configuration (aggregate_tb/)
    v42/seed42/2_grpo/.                   a stage of a multi-stage run

(`/.` is TensorBoard's name for the run at the named directory itself.) `--print` prints the command instead of
running it. Arguments it does not know (`--port 6007`, `--bind_all`) go to TensorBoard. Runs started after
TensorBoard are picked up by running the command again; `tensorboard --logdir PATH` always works too, with path
names.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from aegir.observe.aggregate import AGGREGATE_TB, RunRecord, find_runs, group_runs, short_key
from aegir.rundir import METADATA, TB_DIR

INPUT_ERROR = 2


def _clean(name: str) -> str:
    """A run name TensorBoard's --logdir_spec accepts: no `,` (spec separator), no `:` (name separator)."""
    return " ".join(name.replace(",", " ").replace(":", "-").split()).lstrip("/") or "run"


def _when(run: RunRecord) -> str:
    started = str(run.metadata.get("started_at") or "")
    return started[5:19].replace("T", " ").replace(":", "-") if started else run.path.name[:8]


def run_names(roots: Sequence[Path]) -> dict[Path, str]:
    """tb/ directory -> readable, unique TensorBoard run name, for every run (and stage, and seed aggregate)."""
    runs = find_runs(roots)
    # configurations are labelled among the runs launched together (one multirun, one directory of runs), as the
    # multirun's seed aggregate labels them; two launches of one name are told apart by when they started
    launches: dict[Path, list[RunRecord]] = {}
    for run in runs:
        launches.setdefault(run.path.parent, []).append(run)
    labels: dict[Path, str] = {}
    for launched in launches.values():
        for group in group_runs(launched):
            for run in group.runs:
                labels[run.path] = group.label
    names: dict[Path, str] = {}
    for run in runs:
        trial = run.trial
        if trial:
            params = trial.get("params") or {}
            keys = list(params)
            shown = " ".join(f"{short_key(k, keys)}={v}" for k, v in params.items())
            name = f"{trial.get('study')}/t{trial.get('number')} {shown}"
        else:
            name = f"{labels.get(run.path, run.config.get('name', run.path.name))}/seed{run.seed}"
        name = _clean(name)
        if (run.path / TB_DIR).is_dir():
            names[run.path / TB_DIR] = name
        for stage in run.metadata.get("stages") or []:  # a multi-stage run: each stage's own tb/
            stage_dir = Path(str(stage.get("dir", "")))
            if (stage_dir / TB_DIR).is_dir() and (stage_dir / METADATA).is_file():
                names[stage_dir / TB_DIR] = _clean(f"{name}/{stage_dir.name}")
    for root in roots:
        for aggregate_dir in sorted(Path(root).rglob(AGGREGATE_TB)):
            for configuration in sorted(p for p in aggregate_dir.iterdir() if p.is_dir()):
                names[configuration] = _clean(f"{configuration.name}/mean over seeds")
    # the same name twice (one configuration and seed run twice): add when each started, then a counter
    seen: dict[str, int] = {}
    by_path = {r.path / TB_DIR: r for r in runs}
    duplicated = {n for n in names.values() if list(names.values()).count(n) > 1}
    for path in sorted(names, key=str):
        name = names[path]
        if name in duplicated and path in by_path:
            name = _clean(f"{name} ({_when(by_path[path])})")
        seen[name] = seen.get(name, 0) + 1
        names[path] = name if seen[name] == 1 else f"{name} #{seen[name]}"
    return names


def logdir_spec(names: dict[Path, str]) -> str:
    return ",".join(f"{name}:{path.resolve()}" for path, name in sorted(names.items(), key=lambda kv: kv[1]))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else INPUT_ERROR
    print_only = "--print" in args
    args = [a for a in args if a != "--print"]
    paths = [Path(a) for a in args if not a.startswith("-") and Path(a).is_dir()]
    passthrough = [a for a in args if Path(a) not in paths]
    if not paths:
        print(f"aegir.tb: no such directory among {' '.join(args)}", file=sys.stderr)
        return INPUT_ERROR
    names = run_names(paths)
    if not names:
        print(f"aegir.tb: no TensorBoard runs (run directories with tb/) under {', '.join(map(str, paths))}",
              file=sys.stderr)
        return INPUT_ERROR
    command = [sys.executable, "-m", "tensorboard.main", "--logdir_spec", logdir_spec(names), *passthrough]
    if print_only:
        print(shlex.join(["tensorboard", *command[3:]]))
        return 0
    print(f"TensorBoard over {len(names)} runs:", *sorted(names.values()), sep="\n  ", flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())

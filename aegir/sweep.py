"""`python -m aegir.sweep SPEC.yaml [key=value ...] [sweep.KEY=VALUE ...]`: an Optuna (>= 5.1) search over Aegir runs,
with pruning. `key=value` arguments are Hydra overrides added to every trial's `base`; `sweep.KEY=VALUE` replaces a
scalar key of the spec for this invocation (`sweep.output_dir`, `sweep.storage`, `sweep.n_trials`,
`sweep.study_name`), e.g. a second worker on a shared journal: `sweep.storage=journal:/shared/toy.journal`.

A sweep spec (see sweeps/*.yaml) names the base overrides, the search space, the objective, the sampler, the
pruner, the trial count and the storage. Every trial is a normal run directory (`<study dir>/trials/<n>_...`)
with the trial in its metadata.json. The study lives in persistent storage — a SQLite file in the study directory
by default, any RDB URL (e.g. PostgreSQL) or `journal:PATH` (a journal file for workers on one file system) — so a
sweep resumes after an interruption without repeating finished trials, and several workers (the same command on
several processes or machines) share one study. Failed trials are recorded and the study goes on; a grid ends
when every point has been tried. A worker killed mid-trial leaves no RUNNING trial behind for good: the next worker
to start or finish a trial marks it failed and re-queues its point (aegir/sweep_lease.py). The study opens in
optuna-dashboard: `optuna-dashboard <storage URL>`.

Why not hydra-optuna-sweeper: it pins Optuna < 3 (its SQLite storage breaks on SQLAlchemy 2) and cannot prune.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from hydra.errors import HydraException
from lightning.pytorch.callbacks import Callback
from omegaconf.errors import OmegaConfBaseException

from aegir.cli import format_config_error
from aegir.config import validate
from aegir.errors import GateFailedError, InputError
from aegir.exit_status import FINISHED, INPUT_ERROR, exit_status
from aegir.main import run
from aegir.run.compose import compose_config
from aegir.sweep_lease import TrialLease, recover_stale_trials, requeue, retried_numbers

log = logging.getLogger("aegir")
SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "threshold")
PARAM_TYPES = ("categorical", "float", "int")
_SPEC_KEYS = ("study_name", "base", "params", "objective", "sampler", "pruner", "n_trials", "storage", "output_dir")
_CLI_SPEC_KEYS = ("study_name", "n_trials", "storage", "output_dir")  # settable as sweep.KEY=VALUE


@dataclass
class SweepSpec:
    """A validated sweep spec file."""

    path: Path
    study_name: str
    base: list[str]
    params: dict[str, dict[str, Any]]
    metric: str
    direction: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    n_trials: int
    storage: str | None
    output_dir: Path
    extra_overrides: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "max" if self.direction == "maximize" else "min"


def _fail(path: Path, key: str, message: str) -> None:
    raise InputError(f"{path}: {key}: {message}")


def _check_range(path: Path, key: str, space: dict[str, Any]) -> None:
    """What Optuna would refuse only at the first trial: a range that is empty, or a log range that reaches 0."""
    if not all(k in space for k in ("low", "high")):
        _fail(path, key, "low and high are required for a range")
    low, high = space["low"], space["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        _fail(path, key, f"low and high must be finite numbers, got low={low!r}, high={high!r}")
    if low > high:
        _fail(path, key, f"low {low} is above high {high}")
    if space.get("log") and low <= 0:
        _fail(path, f"{key}.low", f"a log range needs low > 0, got {low}")
    step = space.get("step")
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or not step > 0):
        _fail(path, f"{key}.step", f"must be a number > 0, got {step!r}")


def _check_storage(path: Path, storage: Any) -> None:
    """A storage Optuna can open: `journal:PATH` or an SQLAlchemy URL (sqlite:///..., postgresql://...)."""
    if not isinstance(storage, str) or not storage:
        _fail(path, "storage", f"a URL such as sqlite:///study.db, postgresql://host/db or journal:PATH, "
                               f"got {storage!r}")
    if storage.startswith("journal:"):
        if not storage[len("journal:"):]:
            _fail(path, "storage", "journal: needs a file path, e.g. journal:/shared/study.journal")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(storage)
    except ArgumentError:
        _fail(path, "storage", f"not a database URL: {storage!r} (e.g. sqlite:///study.db, "
                               "postgresql://user@host/db, or journal:PATH)")
    if not url.drivername:
        _fail(path, "storage", f"no database driver in {storage!r}")


def load_spec(path: Path, extra_overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and check a spec; every problem is one InputError line naming the file and key."""
    if not path.is_file():
        raise InputError(f"{path}: no such sweep spec")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with keys {', '.join(_SPEC_KEYS)}")
    run_overrides = []
    for arg in extra_overrides:
        if not arg.startswith("sweep."):
            run_overrides.append(arg)
            continue
        key, sep, value = arg[len("sweep."):].partition("=")
        if not sep or key not in _CLI_SPEC_KEYS:
            raise InputError(f"{arg}: expected sweep.KEY=VALUE with KEY one of {', '.join(_CLI_SPEC_KEYS)}")
        raw[key] = yaml.safe_load(value) if key == "n_trials" else value
    unknown = sorted(set(raw) - set(_SPEC_KEYS))
    if unknown:
        _fail(path, unknown[0], f"unknown key; allowed: {', '.join(_SPEC_KEYS)}")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        _fail(path, "params", "a non-empty mapping of config keys to {type, ...} is required")
    for key, space in params.items():
        if not isinstance(space, dict) or space.get("type") not in PARAM_TYPES:
            _fail(path, f"params.{key}.type", f"one of {', '.join(PARAM_TYPES)} is required")
        if space["type"] == "categorical" and not (isinstance(space.get("choices"), list) and space["choices"]):
            _fail(path, f"params.{key}.choices", "a non-empty list is required")
        if space["type"] in ("float", "int"):
            _check_range(path, f"params.{key}", space)
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict) or not objective.get("metric"):
        _fail(path, "objective.metric", "required, e.g. eval/reward")
    direction = objective.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        _fail(path, "objective.direction", "maximize or minimize")
    sampler = dict(raw.get("sampler") or {"name": "tpe"})
    if sampler.get("name") not in SAMPLERS:
        _fail(path, "sampler.name", f"one of {', '.join(SAMPLERS)}")
    if sampler["name"] == "grid":
        ranged = [k for k, v in params.items() if v["type"] != "categorical"]
        if ranged:
            _fail(path, f"params.{ranged[0]}", "the grid sampler needs categorical choices, not a range")
    pruner = dict(raw.get("pruner") or {"name": "none"})
    if pruner.get("name") not in PRUNERS:
        _fail(path, "pruner.name", f"one of {', '.join(PRUNERS)}")
    n_trials = raw.get("n_trials", 10)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        _fail(path, "n_trials", "a positive integer")
    base = raw.get("base") or []
    if not isinstance(base, list) or not all(isinstance(o, str) for o in base):
        _fail(path, "base", "a list of override strings")
    storage = raw.get("storage")
    if storage is not None:
        _check_storage(path, storage)
    study_name = str(raw.get("study_name") or path.stem)
    output_dir = Path(raw.get("output_dir") or Path("outputs") / "sweeps" / study_name)
    return SweepSpec(path, study_name, list(base), params, str(objective["metric"]), direction, sampler, pruner,
                     n_trials, raw.get("storage"), output_dir, run_overrides)


def make_storage(spec: SweepSpec) -> Any:
    """SQLite file in the study directory by default; `journal:PATH` for a journal file; else an RDB URL."""
    import optuna

    spec.output_dir.mkdir(parents=True, exist_ok=True)
    storage = spec.storage or f"sqlite:///{(spec.output_dir / 'study.db').resolve()}"
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(storage[len("journal:"):]))
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; the warning opened every sweep
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's heartbeat marks a dead worker's trial failed after the grace period; `requeue` runs its point again
        return optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180,
                                          heartbeat_stale_trial_callback=requeue)


def make_sampler(spec: SweepSpec) -> Any:
    import optuna

    seed = spec.sampler.get("seed", 0)
    if spec.sampler["name"] == "grid":
        return optuna.samplers.GridSampler({k: v["choices"] for k, v in spec.params.items()}, seed=seed)
    if spec.sampler["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(spec.sampler.get("n_startup_trials", 5)))


def make_pruner(spec: SweepSpec) -> Any:
    import optuna

    name = spec.pruner["name"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(spec.pruner.get("n_startup_trials", 2)),
                                           n_warmup_steps=int(spec.pruner.get("n_warmup_steps", 0)))
    if name == "threshold":
        return optuna.pruners.ThresholdPruner(lower=spec.pruner.get("lower"), upper=spec.pruner.get("upper"),
                                              n_warmup_steps=int(spec.pruner.get("n_warmup_steps", 0)))
    return optuna.pruners.NopPruner()


def param_overrides(values: Mapping[str, Any]) -> list[str]:
    """Hydra overrides of one trial's parameter values. `stages.<name>.set.<key>` params reach one stage of a
    multi-stage experiment (aegir.run.stages.stage_overrides) and get `++`: the experiment file does not define
    the key."""
    return [f"{'++' if key.startswith('stages.') else ''}{key}={value}" for key, value in values.items()]


def suggest(trial: Any, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, space in params.items():
        if space["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, space["choices"])
        elif space["type"] == "int":
            values[key] = trial.suggest_int(key, int(space["low"]), int(space["high"]), log=bool(space.get("log")))
        else:
            values[key] = trial.suggest_float(key, float(space["low"]), float(space["high"]),
                                              log=bool(space.get("log")))
    return values


class PruningCallback(Callback):
    """Report the objective metric to the trial at every validation, at `trainer.global_step` (the optimizer steps
    done, as in the sample file names); raise TrialPruned when the pruner says so."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        import optuna

        value = trainer.callback_metrics.get(self.metric)
        if value is None or trainer.sanity_checking:
            return
        step = int(trainer.global_step)
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {self.metric}={float(value):.4g}")


def trial_overrides(spec: SweepSpec, values: Mapping[str, Any], scored_stage: str | None = None) -> list[str]:
    """Everything one trial's run is composed from: base, command-line overrides, its parameter values, and the
    sweep's objective — set on `scored_stage` (the last stage of a multi-stage experiment, whose objective value the
    run returns; the run's own top-level config may train something else, e.g. SFT before GRPO) or on the run."""
    target = f"++stages.{scored_stage}.set." if scored_stage else ""
    return [*spec.base, *spec.extra_overrides, *param_overrides(values), f"{target}objective.metric={spec.metric}",
            f"{target}objective.mode={spec.mode}", "trainer.enable_progress_bar=false"]


def preflight(spec: SweepSpec) -> str | None:
    """Compose and validate the first point of the space before the study is touched, so a wrong key or value in
    `base` or on the command line is one InputError line, not one failed trial per point. Returns the scored stage
    (the last of a multi-stage experiment, else None) for `trial_overrides`."""
    first = {k: v["choices"][0] if v["type"] == "categorical" else v["low"] for k, v in spec.params.items()}
    try:
        stages = list(compose_config([*spec.base, *spec.extra_overrides]).get("stages") or {})
        scored_stage = stages[-1] if stages else None
        validate(compose_config(trial_overrides(spec, first, scored_stage)))
    except (HydraException, OmegaConfBaseException) as err:
        raise InputError(f"{spec.path}: base or command-line overrides: {format_config_error(err)}") from None
    return scored_stage


def run_sweep(spec: SweepSpec) -> Any:
    """Create or load the study and run trials until it has `n_trials` finished (complete, pruned or failed)
    trials or the grid is exhausted. Returns the study."""
    import optuna

    scored_stage = preflight(spec)
    study = optuna.create_study(study_name=spec.study_name, storage=make_storage(spec), sampler=make_sampler(spec),
                                pruner=make_pruner(spec), direction=spec.direction, load_if_exists=True)
    describe_study(study, spec)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                       optuna.trial.TrialState.FAIL)

    def objective(trial: Any) -> float:
        values = suggest(trial, spec.params)
        overrides = trial_overrides(spec, values, scored_stage)
        cfg = compose_config(overrides)
        run_dir = spec.output_dir / "trials" / f"{trial.number:04d}_{spec.study_name}"
        trial.set_user_attr("run_dir", str(run_dir))
        metadata = {"trial": {"study": spec.study_name, "number": trial.number, "params": values,
                              "spec": str(spec.path)}}
        try:
            with TrialLease(trial):
                value = run(cfg, overrides, run_dir=run_dir, callbacks=[PruningCallback(trial, spec.metric)],
                            extra_metadata=metadata)
        except optuna.TrialPruned as pruned:  # a finished run says where it is; a pruned trial does too
            print(f"trial {trial.number} {pruned}; run directory: {run_dir}", flush=True)
            raise
        if not math.isfinite(value):
            raise RuntimeError(f"objective {spec.metric} is not finite ({value})")
        return value

    while True:
        recover_stale_trials(study)  # a killed worker's RUNNING trial: failed, its point re-queued
        trials = study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        done = sum(t.state in finished_states and t.number not in retried for t in trials)
        remaining = spec.n_trials - done
        if remaining <= 0:
            break
        # Any error inside a trial fails that trial only; a wrong spec/config (InputError) stops the sweep. After
        # each trial, this worker looks for lost trials again, so their points run before the study ends.
        study.optimize(objective, n_trials=remaining,
                       catch=(RuntimeError, ValueError, OSError, ArithmeticError, GateFailedError),
                       callbacks=[lambda study, _trial: recover_stale_trials(study)])
        # A grid sampler stops the study once every point was tried, even when a point was re-queued meanwhile.
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            break
    return study


def describe_study(study: Any, spec: SweepSpec) -> None:
    """What optuna-dashboard shows about the study: the objective's name on its axis (not "Objective 0"), and as
    user attributes the spec, the objective, the command that runs (or resumes) it and where its runs are."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.metric])
    command = ["python", "-m", "aegir.sweep", str(spec.path), *spec.extra_overrides]
    attrs = {"spec": str(spec.path), "objective": f"{spec.direction} {spec.metric}",
             "command": shlex.join(command), "output_dir": str(spec.output_dir),
             "params": ", ".join(spec.params), "base": " ".join(spec.base)}
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def summarize(study: Any) -> str:
    import optuna

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    lines = [f"study {study.study_name}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        lines.append(f"best trial {best.number}: value {best.value:.4f} params {best.params} "
                     f"run {best.user_attrs.get('run_dir')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return FINISHED if args else INPUT_ERROR
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        spec = load_spec(Path(args[0]), args[1:])
        study = run_sweep(spec)
    except InputError as err:
        print(f"aegir.sweep: {err}", file=sys.stderr)
        return exit_status(err)
    print(summarize(study))
    print(f"study directory: {spec.output_dir}")
    print(f"optuna-dashboard sqlite:///{(spec.output_dir / 'study.db').resolve()}" if spec.storage is None
          else f"optuna-dashboard {spec.storage}")
    print(f"python -m aegir.tb {spec.output_dir}   (TensorBoard, trials named by number and parameters; or: "
          f"tensorboard --logdir {spec.output_dir / 'trials'})")
    return FINISHED


if __name__ == "__main__":
    sys.exit(main())

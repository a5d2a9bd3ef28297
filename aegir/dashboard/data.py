"""The observatory page's data layer: plain functions from run directories to the numbers the page draws.

Nothing here knows about HTML. Runs are read through the run directory contract (aegir.rundir via
aegir.observe.aggregate), seeds are pooled with Student-t intervals (aegir.eval.stats), arms are compared by seed
with a paired t-test (SciPy), long curves are thinned keeping every bucket's extremes. Every function tolerates
what a live or broken run leaves behind: a torn history line, no summary.json yet, a failed run without metrics.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from aegir.eval.stats import mean_ci
from aegir.observe.aggregate import (
    RunRecord,
    differing_keys,
    find_runs,
    flatten,
    group_runs,
    is_companion,
    parameter_columns,
)
from aegir.observe.arms import ARMS_JSON, REFERENCE_ARM  # the arm every other arm is compared with
from aegir.observe.arms import paired_difference as arm_paired_difference
from aegir.rundir import (
    HISTORY,
    METADATA,
    REPLICATE_LOCAL_KEYS,
    config_hash,
    read_history,
    read_json_object,
)


# --------------------------------------------------------------------------------------------------- reading
@dataclass
class RunData:
    """One run directory as the page sees it: its record (metadata, summary), its history and a short unique id."""

    record: RunRecord
    history: dict[str, list[tuple[int, float]]]
    id: str

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def arm(self) -> str:
        return str(self.record.metadata.get("arm") or "—")


@dataclass
class Collection:
    """What the command line named, read: the runs, plus a line per input that holds none or is unreadable."""

    runs: list[RunData]
    notices: list[str] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)


def load(paths: Sequence[Path]) -> Collection:
    """Every run below the given directories (each path must exist: the caller checks). A directory without runs,
    or a run whose metadata.json / summary.json cannot be read, becomes a notice on the page rather than an error
    (the unreadable run stays in the table with its status saying why)."""
    notices: list[str] = []
    records: list[RunRecord] = []
    for root in paths:
        found = find_runs([root])
        if not found:
            notices.append(f"{root}: not a run directory (no metadata.json below it)")
        notices.extend(f"{r.path}: {r.status}" for r in found if r.problem is not None)
        records.extend(r for r in found if r.path not in {x.path for x in records})
    ids = _short_ids([r.path for r in records])
    runs = [RunData(r, run_history(r), ids[i]) for i, r in enumerate(records)]
    for run in runs:
        torn = _torn_lines(run.path / HISTORY)
        if torn:
            notices.append(f"{run.path / HISTORY}: {torn} unreadable line(s) skipped (a torn write)")
    return Collection(runs, notices, list(paths))


def stage_records(record: RunRecord) -> list[tuple[str, dict[str, Any], Path]]:
    """(name, metadata, directory) of each stage of a multi-stage run (stages/<k>_<name>/); [] for other runs."""
    if record.metadata.get("kind") != "multi_stage":
        return []
    out = []
    for stage in record.metadata.get("stages") or []:
        root = Path(str(stage.get("dir", "")))
        meta, _ = read_json_object(root / METADATA)  # None: a stage not started yet, or unreadable
        out.append((str(stage.get("name", root.name)), meta or {}, root))
    return out


def run_history(record: RunRecord) -> dict[str, list[tuple[int, float]]]:
    """The run's history; a multi-stage run (which logs in its stages) gets its stages' metrics as
    `<stage>:<metric>`, each on its own stage's steps."""
    own = read_history(record.path / HISTORY)
    if own:
        return own
    merged: dict[str, list[tuple[int, float]]] = {}
    for name, _, root in stage_records(record):
        for metric, series in read_history(root / HISTORY).items():
            merged[f"{name}:{metric}"] = series
    return merged


def _torn_lines(path: Path) -> int:
    """Lines of a history file that do not parse as JSON objects: shown on the page, never fatal. Only lines that
    do not look like one object (`{...}`) are parsed: a second full parse of a 10k-step history would cost
    seconds."""
    if not path.is_file():
        return 0
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if line and not (line.startswith("{") and line.endswith("}")):
                try:
                    bad += not isinstance(json.loads(line), dict)
                except json.JSONDecodeError:
                    bad += 1
    return bad


def _short_ids(paths: Sequence[Path]) -> list[str]:
    """Run names as short as they can be while unique: the directory name, prefixed by parents where needed."""
    depth = 1
    while True:
        ids = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(ids)) == len(ids) or depth > 6:
            return ids
        depth += 1


# --------------------------------------------------------------------------------------------------- curves
def downsample_minmax(steps: Sequence[int], values: Sequence[float], max_points: int
                      ) -> tuple[list[int], list[float]]:
    """At most ~max_points points of a curve: the index range is cut into max_points/2 buckets and each keeps its
    minimum and its maximum (in step order), plus the first and last point -- spikes and dips survive thinning,
    which a stride would drop."""
    n = len(steps)
    if n <= max_points:
        return list(steps), list(values)
    y = np.asarray(values, dtype=np.float64)
    n_buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, n_buckets + 1).astype(int)
    keep = {0, n - 1}
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi > lo:
            chunk = y[lo:hi]
            keep.add(lo + int(np.argmin(chunk)))
            keep.add(lo + int(np.argmax(chunk)))
    idx = sorted(keep)
    return [int(steps[i]) for i in idx], [float(y[i]) for i in idx]


def mean_ci_columns(matrix: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """mean_ci of every column of [n_seeds, n_steps] at once (n_seeds >= 2): the means and the Student-t
    half-widths, so a 10k-step band costs one vectorised pass instead of 10k calls."""
    n = matrix.shape[0]
    if n < 2:
        raise ValueError("a seed band needs at least two seeds")
    t = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1))
    return matrix.mean(axis=0), t * matrix.std(axis=0, ddof=1) / math.sqrt(n)


def seed_band(series: Sequence[Sequence[tuple[int, float]]]) -> dict[str, list[float]] | None:
    """Mean ± 95% CI (Student t) across seeds at every step all of them logged; None under two seeds."""
    series = [s for s in series if s]
    if len(series) < 2:
        return None
    common = set.intersection(*({step for step, _ in s} for s in series))
    if not common:
        return None
    steps = sorted(common)
    lookups = [dict(s) for s in series]
    matrix = np.array([[lookup[step] for step in steps] for lookup in lookups], dtype=np.float64)
    mean, half = mean_ci_columns(matrix)
    return {"steps": steps, "mean": mean.tolist(), "lower": (mean - half).tolist(), "upper": (mean + half).tolist(),
            "n": len(series)}


def band_members(runs: Sequence[RunData]) -> list[RunData]:
    """The runs a seed band pools: finished and still-running ones (a live multirun is banded up to its slowest
    seed); a failed or pruned run is drawn as its own curve, never cutting a band short."""
    return [r for r in runs if r.record.status in ("finished", "running")]


def thin_band(band: Mapping[str, Any], max_points: int) -> dict[str, Any]:
    """A band thinned on its mean's extremes, the lower and upper bounds taken at the same steps."""
    steps, _ = downsample_minmax(band["steps"], band["mean"], max_points)
    where = {s: i for i, s in enumerate(band["steps"])}
    return {"steps": steps, **{k: [band[k][where[s]] for s in steps] for k in ("mean", "lower", "upper")},
            "n": band["n"]}


def curve_metrics(runs: Sequence[RunData]) -> list[str]:
    """The metrics worth a curve: every numeric history key but a metric's companions (`/n`, `/ci95`, bands)."""
    names: set[str] = set()
    for run in runs:
        names.update(k for k in run.history if not is_companion(k))
    return sorted(names)


def point_budget(n_series: int, total: int = 900_000, most: int = 1000, least: int = 100) -> int:
    """Points per series so that the whole page stays within ~`total` points (its size), each series between
    `least` and `most`: a 3-run multirun keeps fine detail, 50 runs x 10k steps still fits in ~20 MB."""
    if n_series <= 0:
        return most
    return max(least, min(most, total // n_series))


# --------------------------------------------------------------------------------------------------- groups, arms
def configuration_groups(runs: Sequence[RunData]) -> list[tuple[str, list[RunData]]]:
    """(label, runs) per configuration (seeds pooled), the seed aggregate's grouping."""
    by_path = {r.path: r for r in runs}
    return [(g.label, [by_path[m.path] for m in g.runs]) for g in group_runs([r.record for r in runs])]


def arm_key(run: RunData) -> str:
    """Hash of the configuration without seed and arm: runs sharing it are the same model and budget on
    different corpus arms (and seeds)."""
    return config_hash(run.record.config, exclude=(*REPLICATE_LOCAL_KEYS, "arm", "name"))


@dataclass(frozen=True)
class PairedDiff:
    """reference − other over the seeds both ran: mean difference, its 95% CI (paired t) and the two-sided p."""

    reference: str
    other: str
    n: int
    mean: float
    lower: float
    upper: float
    p: float
    seeds: tuple[Any, ...]


def paired_difference(reference: Mapping[Any, float], other: Mapping[Any, float], names: tuple[str, str]
                      ) -> PairedDiff:
    """Paired by seed, so seed-to-seed variation shared by both arms cancels (the seed aggregate's own test,
    aegir/observe/arms.py); under two pairs the interval is undefined (nan: the page's JSON has no infinity)."""
    seeds = tuple(s for s in reference if s in other and _finite(reference[s]) and _finite(other[s]))
    if not seeds:
        return PairedDiff(*names, 0, math.nan, math.nan, math.nan, math.nan, seeds)
    paired = arm_paired_difference({s: float(reference[s]) for s in seeds}, {s: float(other[s]) for s in seeds})
    lower, upper = (v if math.isfinite(v) else math.nan for v in (paired.lower, paired.upper))
    return PairedDiff(*names, len(seeds), paired.mean, lower, upper, paired.p, seeds)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def final_values(runs: Sequence[RunData], metric: str) -> dict[Any, float]:
    """Seed -> final value of a metric over the finished runs (summary.json)."""
    out: dict[Any, float] = {}
    for run in runs:
        value = ((run.record.summary or {}).get("metrics") or {}).get(metric)
        if run.record.status == "finished" and _finite(value):
            out[run.record.seed] = float(value)
    return out


def arm_metrics(runs: Sequence[RunData]) -> list[str]:
    """The metrics arms are compared on: every final `eval/*` and `val/*` metric and the objective."""
    names: set[str] = set()
    for run in runs:
        for key, value in ((run.record.summary or {}).get("metrics") or {}).items():
            if _finite(value) and not is_companion(key) and key.startswith(("eval/", "val/")):
                names.add(key)
        if run.record.objective_metric != "—":
            names.add(run.record.objective_metric)
    return sorted(names)


def arm_comparisons(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """Per set of runs that differ only in arm and seed (two arms or more): per metric, one seed band per arm over
    steps, each arm's final mean ± 95% CI, and the paired difference reference − arm at the end (the reference is
    `full` when present, else the first arm by name)."""
    sets: dict[str, list[RunData]] = defaultdict(list)
    for run in runs:
        sets[arm_key(run)].append(run)
    comparisons = []
    for key, members in sets.items():
        by_arm: dict[str, list[RunData]] = defaultdict(list)
        for run in members:
            by_arm[run.arm].append(run)
        if len(by_arm) < 2:
            continue
        arms = sorted(by_arm, key=lambda a: (a != REFERENCE_ARM, a))
        reference = arms[0]
        metrics = []
        for metric in arm_metrics(members):
            finals = {arm: final_values(by_arm[arm], metric) for arm in arms}
            bands = {arm: seed_band([r.history.get(metric, []) for r in band_members(by_arm[arm])]) for arm in arms}
            single = {arm: by_arm[arm][0].history.get(metric, []) for arm in arms if bands[arm] is None}
            metrics.append({
                "metric": metric,
                "bands": bands, "single": single,
                "finals": {arm: {"values": vals, **mean_ci(list(vals.values())).as_dict()}
                           for arm, vals in finals.items()},
                "diffs": [paired_difference(finals[reference], finals[arm], (reference, arm)) for arm in arms[1:]],
            })
        gates = {arm: [(r.id, (r.record.summary or {}).get("gates") or {}) for r in by_arm[arm]] for arm in arms}
        comparisons.append({"key": key, "name": str(members[0].record.config.get("name") or "—"), "arms": arms,
                            "reference": reference, "runs": {a: [r.id for r in by_arm[a]] for a in arms},
                            "metrics": metrics, "gates": gates, "data": data_hashes(members)})
    return comparisons




def aggregate_gates(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """The verdicts of gates declared on a multirun's aggregate (e.g. over the arms' paired differences), from the
    `arms.json` the seed aggregate writes at the multirun's root: `{source, label, gates}` per comparison."""
    out = []
    for root in roots:
        for path in sorted(Path(root).rglob(ARMS_JSON)):
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            for entry in entries if isinstance(entries, list) else []:
                gates = entry.get("gates") if isinstance(entry, dict) else None
                if isinstance(gates, dict) and gates:
                    out.append({"source": str(path), "label": str(entry.get("label", "—")),
                                "gates": {name: {"verdict": "pass" if g.get("passed") else "fail",
                                                 "observed": g.get("observed"), "op": g.get("op"),
                                                 "threshold": g.get("threshold"), "metric": g.get("metric")}
                                          for name, g in gates.items() if isinstance(g, dict)}})
    return out


def data_hashes(runs: Sequence[RunData]) -> dict[str, list[str]]:
    """Per data product of metadata.json (`data.<product>.sha256`), the distinct hashes over the runs: one hash
    means every arm was scored on the same bytes (a cross-arm instrument), several mean it differs by arm."""
    hashes: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        for product, info in (run.record.metadata.get("data") or {}).items():
            if isinstance(info, Mapping):
                for key in ("sha256", "eval_sha256"):
                    if info.get(key):
                        hashes[product if key == "sha256" else f"{product}.{key}"].add(str(info[key]))
    return {k: sorted(v) for k, v in sorted(hashes.items())}


# --------------------------------------------------------------------------------------------------- runs, gates
def objective_ci(run: RunData) -> tuple[str, float | None, float | None]:
    """(metric, value, 95% CI half-width) of a run's objective; an unfinished run's last reported value, no CI."""
    summary = run.record.summary or {}
    objective = summary.get("objective") or {}
    metric = str(objective.get("metric") or run.record.objective_metric)
    value = objective.get("value")
    if not _finite(value):
        last = run.history.get(metric)
        return metric, (last[-1][1] if last else None), None
    ci = ((summary.get("metrics") or {}).get(f"{metric}/ci95"))
    if not _finite(ci):
        stat = (summary.get("metric_stats") or {}).get(metric) or {}
        ci = stat.get("ci95")
    return metric, float(value), float(ci) if _finite(ci) else None


def gate_cells(run: RunData) -> dict[str, dict[str, Any]]:
    """Per gate: verdict `pass` / `fail`, observed value, op and threshold; a run without verdicts yet (running,
    failed before the end) gets its configured gates as `pending` or `no verdict`."""
    verdicts = (run.record.summary or {}).get("gates") or {}
    cells: dict[str, dict[str, Any]] = {}
    for name, v in verdicts.items():
        cells[name] = {"verdict": "pass" if v.get("passed") else "fail", "observed": v.get("observed"),
                       "op": v.get("op"), "threshold": v.get("threshold"), "metric": v.get("metric")}
    configured = run.record.config.get("gates") or {}
    pending = "pending" if run.record.status == "running" else "no verdict"
    for name, spec in configured.items():
        if name != "required" and name not in cells and isinstance(spec, Mapping):
            cells[name] = {"verdict": pending, "observed": None, "op": spec.get("op"), "threshold": spec.get("value"),
                           "metric": spec.get("metric")}
    return cells


def provenance(run: RunData) -> dict[str, Any]:
    """What exactly the run trained on and with: data products and their hashes, arm, seeds, parent checkpoint,
    git, overrides, versions."""
    meta = run.record.metadata
    out = {key: meta.get(key) for key in ("arm", "seed", "data_seed", "data", "parent", "stage", "git", "overrides",
                                          "versions", "config_hash", "model", "trial", "observe", "reason")
           if meta.get(key) not in (None, "", [], {})}
    stages = {name: {k: stage[k] for k in ("arm", "data", "parent", "model", "status") if stage.get(k)}
              for name, stage, _ in stage_records(run.record)}
    if stages:  # a multi-stage run: each stage's data products and the checkpoint it started from
        out["stages"] = stages
    return out


def config_table(runs: Sequence[RunData]) -> dict[str, dict[str, Any]]:
    """Per run, its flattened config restricted to the keys that differ between any two runs (seed and paths
    left out): everything a diff of any two of them can show, and nothing more to carry."""
    keys = differing_keys([r.record for r in runs]) if len(runs) > 1 else []
    out = {}
    for run in runs:
        flat = flatten({k: v for k, v in run.record.config.items() if k not in REPLICATE_LOCAL_KEYS})
        out[run.id] = {k: flat.get(k, "<absent>") for k in keys}
    return out


def config_diff(table: Mapping[str, Mapping[str, Any]], a: str, b: str) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ between runs a and b of a config_table (the page does the same in the browser)."""
    ca, cb = table[a], table[b]
    return [(k, ca[k], cb[k]) for k in ca if json.dumps(ca[k], sort_keys=True, default=str)
            != json.dumps(cb[k], sort_keys=True, default=str)]


# --------------------------------------------------------------------------------------------------- GRPO health
def on_periods(series: Sequence[tuple[int, float]]) -> list[tuple[int, int]]:
    """(first, last) step of each stretch where a 0/1 flag (grpo/collapse) is on: the shaded canary periods."""
    periods: list[tuple[int, int]] = []
    start: int | None = None
    last = 0
    for step, value in series:
        if value >= 0.5 and start is None:
            start = step
        elif value < 0.5 and start is not None:
            periods.append((start, last))
            start = None
        last = step
    if start is not None:
        periods.append((start, last))
    return periods


def reward_components(history: Mapping[str, Sequence[tuple[int, float]]]) -> list[str]:
    """Names of the reward components a GRPO run logged (`grpo/reward/<name>/mean`)."""
    return sorted(k.split("/")[2] for k in history if k.startswith("grpo/reward/") and k.endswith("/mean")
                  and k.count("/") == 3)


def reward_decomposition(history: Mapping[str, Sequence[tuple[int, float]]], reward_cfg: Mapping[str, Any]
                         ) -> dict[str, Any]:
    """Per step, each component's weighted contribution w_i·mean(R_i) to R = R_A·Σ w_i R_i (times the gate's mean
    pass rate when there is a gate): a product of batch means, so it approximates the mean of R where
    components apply to different rows; the measured grpo/reward/mean is drawn beside it."""
    weights = {name: float((spec or {}).get("weight", 1.0))
               for name, spec in (reward_cfg.get("components") or {}).items()}
    gate = reward_cfg.get("gate")
    gate_series = dict(history.get(f"grpo/reward/{gate}/mean", [])) if gate else {}
    parts = {}
    for name in reward_components(history):
        if name == gate or name not in weights:
            continue
        series = history[f"grpo/reward/{name}/mean"]
        parts[name] = [(s, weights[name] * v * (gate_series.get(s, 1.0) if gate else 1.0)) for s, v in series]
    return {"weights": weights, "gate": gate, "gate_rate": sorted(gate_series.items()), "parts": parts}


def eval_task_rewards(run: RunData) -> list[dict[str, Any]]:
    """Final per-task eval reward with its 95% CI (summary.json metric_stats, keyed by task; `all` last)."""
    stats = (run.record.summary or {}).get("metric_stats") or {}
    rows = [{"task": task, **stat} for task, stat in stats.items()
            if isinstance(stat, Mapping) and _finite(stat.get("mean")) and "/" not in task]
    return sorted(rows, key=lambda r: (r["task"] == "all", r["task"]))


# --------------------------------------------------------------------------------------------------- sweeps
def sweep_points(runs: Sequence[RunData]) -> dict[str, Any] | None:
    """Parameters × objective of a sweep or multirun (two runs or more of one objective): per run its parameter
    values, objective (a pruned or failed run's last reported value) and status; plus the optimisation history in
    trial (else start) order with the best so far."""
    if len(runs) < 2:
        return None
    records = [r.record for r in runs]
    columns = parameter_columns(records)
    if not columns:
        return None
    mode = records[0].objective_mode
    order = sorted(runs, key=lambda r: ((r.record.trial or {}).get("number", math.inf),
                                        str(r.record.metadata.get("started_at")), r.id))
    points = []
    for i, run in enumerate(order):
        metric, value, _ = objective_ci(run)
        params = {k: _param_value(run.record, k) for k in columns}
        number = (run.record.trial or {}).get("number", i)
        points.append({"run": run.id, "params": params, "objective": value, "status": run.record.status,
                       "trial": number})
    study = next((r.record.trial.get("study") for r in runs if r.record.trial), None)
    return {"columns": columns, "points": points, "history": _best_so_far(points, mode), "mode": mode,
            "metric": records[0].objective_metric, "study": study}


STUDY_DB = "study.db"  # a sweep's default storage, in its study directory (aegir.sweep.make_storage)
_TRIAL_STATUS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
                 "WAITING": "running"}


def study_trials(roots: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """Study name -> its trials `{number, status, value, params}` from the `study.db` of each sweep directory below
    the roots: the trials that left no run directory (a trial refused for bad input) are seen only there."""
    paths = [p for root in roots for p in sorted(Path(root).rglob(STUDY_DB))]
    if not paths:
        return {}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        storage = f"sqlite:///{path.resolve()}"
        try:
            for summary in optuna.get_all_study_summaries(storage):
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                out[summary.study_name] = [{"number": t.number, "status": _TRIAL_STATUS.get(t.state.name, "failed"),
                                            "value": t.value, "params": dict(t.params)} for t in study.trials]
        except Exception:  # not an Optuna database, or one being migrated: the run directories still show the sweep
            continue
    return out


def add_storage_only_trials(points: dict[str, Any], trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A sweep's points plus the trials of its study that have no run directory, marked as such."""
    seen = {p["trial"] for p in points["points"]}
    extra = [t for t in trials if t["number"] not in seen]
    for trial in extra:
        params = {k: trial["params"].get(k, "—") for k in points["columns"]}
        points["points"].append({"run": f"trial {trial['number']} (no run directory)", "params": params,
                                 "objective": trial["value"], "status": trial["status"], "trial": trial["number"]})
    if extra:
        points["points"].sort(key=lambda p: p["trial"])
        points["history"] = _best_so_far(points["points"], points["mode"])
    return points


def _best_so_far(points: Sequence[Mapping[str, Any]], mode: str) -> list[dict[str, Any]]:
    best, history = None, []
    for point in points:
        value = point["objective"]
        if value is not None and point["status"] == "finished":
            best = value if best is None else (max(best, value) if mode == "max" else min(best, value))
        history.append({"trial": point["trial"], "objective": value, "best": best, "status": point["status"]})
    return history


def _param_value(record: RunRecord, key: str) -> Any:
    from aegir.observe.aggregate import value_of

    text = value_of(record, key)
    try:
        return float(text)
    except ValueError:
        return text


# --------------------------------------------------------------------------------------------------- samples
def eval_samples(run: RunData, limit: int = 64) -> list[dict[str, Any]]:
    """The last evaluation's completions (samples/eval_step*.jsonl) with their reward components, at most `limit`."""
    files = sorted((run.path / "samples").glob("eval_step*.jsonl"))
    if not files:
        return []
    out = []
    step = files[-1].stem.replace("eval_step", "")
    with open(files[-1], encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                components = {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("reward/")}
                out.append({"run": run.id, "step": int(step) if step.isdigit() else step,
                            "task": row.get("task", "—"), "prompt": _text(row.get("prompt"))[:400],
                            "completion": _text(row.get("completion"))[:600], "reward": row.get("reward"),
                            "components": components})
            if len(out) >= limit:
                break
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # chat messages
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
                         for m in value)
    return "" if value is None else str(value)


# --------------------------------------------------------------------------------------------------- learning dynamics
def learning_dynamics(run: RunData, max_probes: int = 300) -> dict[str, Any] | None:
    """The learning-dynamics records of a run (`observe/`, docs/observatory.md) as the page draws them; None when
    the run has none. Each part is present only when its file is."""
    from aegir.observe.dynamics_math import pca_2d
    from aegir.observe.observatory import FILES, OBSERVE_DIR, read_rows

    root = run.path / OBSERVE_DIR
    if not root.is_dir():
        return None
    out: dict[str, Any] = {}
    history = read_rows(root / FILES["history"])
    if history:
        layers = list(dict.fromkeys(layer for row in history for layer in row.get("layers") or []))
        out["drift"] = {"steps": [row["step"] for row in history], "layers": layers,
                        "z": [[(row.get("drift_init") or {}).get(layer) for row in history] for layer in layers]}
        out["alarms"] = [{"step": row["step"], "alarm": name, "layers": layers_}
                         for row in history for name, layers_ in (row.get("alarms") or {}).items()]
    skills = read_rows(root / FILES["radar"])
    if skills:
        out["radar"] = {"first": skills[0], "last": skills[-1]}
    geometry = read_rows(root / FILES["geometry"])
    if geometry:
        out["rsa"] = {k: [row.get(k) for row in geometry] for k in ("step", "drift", "drift_first", "drift_middle")}
        maps = []
        for row in geometry:
            path = root / str(row.get("file", ""))
            if not path.is_file():
                continue
            try:
                with np.load(path) as npz:
                    points = pca_2d(npz["last"][:max_probes])
                    maps.append({"step": row["step"], "x": np.round(points[:, 0], 4).tolist(),
                                 "y": np.round(points[:, 1], 4).tolist(),
                                 "skill": [str(s) for s in npz["skills"][:max_probes]],
                                 "id": [str(s) for s in npz["ids"][:max_probes]]})
            except (OSError, KeyError, ValueError):
                continue  # a snapshot being written
        if maps:
            out["maps"] = maps
    calibration = read_rows(root / FILES["calibration"])
    if calibration:
        out["calibration"] = {"first": calibration[0], "last": calibration[-1],
                              "ece": [(row["step"], row.get("ece")) for row in calibration]}
    board = read_rows(root / FILES["hard_examples"])
    if board:
        steps = sorted({row["step"] for row in board})
        ids = list(dict.fromkeys(row["id"] for row in board))
        cells = {(row["id"], row["step"]): row for row in board}
        out["board"] = {"steps": steps, "ids": ids,
                        "category": {row["id"]: row.get("category", "") for row in board},
                        "ok": [[(cells[(i, s)].get("ok") if (i, s) in cells else None) for s in steps] for i in ids],
                        "last": {i: str(cells.get((i, steps[-1]), {}).get("completion", ""))[:80] for i in ids}}
    trajectories = read_rows(root / FILES["trajectories"])
    if trajectories:
        out["logprob"] = logprob_heatmaps(trajectories, _probe_skills(root / FILES["probes"]))
    return out or None


def _probe_skills(path: Path) -> dict[str, str]:
    skills: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                skills[str(row["id"])] = str(row.get("skill", "—"))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return skills


def logprob_heatmaps(rows: Sequence[Mapping[str, Any]], skills: Mapping[str, str]) -> dict[str, Any]:
    """Per skill, the mean answer-token log-prob at each (snapshot, token position) over the skill's probes that
    have that position: how the answer is learned, position by position."""
    steps = [row["step"] for row in rows]
    sums: dict[str, dict[tuple[int, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    width: dict[str, int] = defaultdict(int)
    for t, row in enumerate(rows):
        for probe, values in (row.get("logprobs") or {}).items():
            skill = skills.get(probe, "—")
            for pos, value in enumerate(values or []):
                if _finite(value):
                    sums[skill][(t, pos)].append(float(value))
                    width[skill] = max(width[skill], pos + 1)
    out = {}
    for skill, cells in sorted(sums.items()):
        out[skill] = [[round(float(np.mean(cells[(t, p)])), 4) if cells.get((t, p)) else None
                       for p in range(width[skill])] for t in range(len(steps))]
    return {"steps": steps, "skills": out}

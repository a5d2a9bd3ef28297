"""The observatory page: the data layer's numbers (aegir.dashboard.data) gathered into one JSON payload, and that
payload written into one self-contained HTML file with plotly.js inlined (no CDN: it opens from disk, air-gapped).

The page's script (static/page.js) draws each panel from the payload, lazily as it scrolls into view, so a page of
50 runs opens in seconds; a panel whose data is absent is not drawn at all.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections import defaultdict
from dataclasses import asdict
from importlib import resources
from typing import Any, Mapping, Sequence

from aegir.dashboard import data as d
from aegir.eval.stats import mean_ci

MAX_DYNAMICS_RUNS = 12  # learning-dynamics panels carry embeddings: beyond this many runs, the first ones only
MAX_SAMPLES_PER_RUN = 48


def _round(value: Any, digits: int = 5) -> Any:
    """Floats to `digits` significant digits (what a plot can show), non-finite to null: the page's size."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


def _series(points: Sequence[tuple[int, float]], budget: int) -> list[list[float]]:
    steps, values = d.downsample_minmax([s for s, _ in points], [v for _, v in points], budget)
    return [steps, values]


def build_payload(collection: d.Collection, point_total: int = 900_000) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data; each part only where its data exists."""
    runs = collection.runs
    metrics = d.curve_metrics(runs)
    n_series = sum(len([m for m in r.history if not d.is_companion(m)]) for r in runs)
    groups = d.configuration_groups(runs)
    banded = [(label, members) for label, members in groups if len(members) > 1]
    budget = d.point_budget(n_series + len(banded) * len(metrics) * 3, total=point_total)
    label_of = {r.id: label for label, members in groups for r in members}

    table = []
    for run in runs:
        metric, value, ci = d.objective_ci(run)
        summary = run.record.summary or {}
        table.append({
            "id": run.id, "path": str(run.path), "name": str(run.record.config.get("name") or "—"), "arm": run.arm,
            "seed": run.record.seed, "model": (run.record.metadata.get("model") or {}).get("name", "—"),
            "status": run.record.status, "reason": run.record.metadata.get("reason"),
            "objective": {"metric": metric, "value": value, "ci": ci, "mode": run.record.objective_mode,
                          "final": d._finite((summary.get("objective") or {}).get("value"))},
            "gates": d.gate_cells(run), "wall": summary.get("wall_time_s", run.record.metadata.get("duration_s")),
            "steps": summary.get("steps") or max((s for series in run.history.values() for s, _ in series[-1:]),
                                                 default=None),
            "config": label_of.get(run.id, "—"), "task": run.record.task,
        })
    configs = []
    for label, members in groups:
        values = [v for r in members if r.record.status == "finished" for _, v, _ in [d.objective_ci(r)]
                  if v is not None]
        stat = mean_ci(values)
        configs.append({"label": label, "runs": [r.id for r in members], "finished": len(values),
                        "metric": d.objective_ci(members[0])[0], "mean": stat.mean, "ci95": stat.ci95,
                        "arm": sorted({r.arm for r in members})})

    # a metric's companions stay out of the curves, but eval rewards keep their CI half-width for their bands
    series = {r.id: {m: _series(v, budget) for m, v in r.history.items()
                     if v and (not d.is_companion(m) or (m.startswith("eval/") and m.endswith("/ci95")))}
              for r in runs}
    bands: dict[str, dict[str, Any]] = defaultdict(dict)
    for label, members in banded:
        for metric in metrics:
            band = d.seed_band([r.history.get(metric, []) for r in d.band_members(members)])
            if band:
                bands[label][metric] = d.thin_band(band, budget)

    arms = []
    for comparison in d.arm_comparisons(runs):
        for entry in comparison["metrics"]:
            entry["bands"] = {a: d.thin_band(b, budget) for a, b in entry["bands"].items() if b}
            entry["single"] = {a: _series(s, budget) for a, s in entry["single"].items() if s}
            entry["diffs"] = [asdict(x) for x in entry["diffs"]]
            entry["finals"] = {a: {**f, "values": {str(k): v for k, v in f["values"].items()}}
                               for a, f in entry["finals"].items()}
        arms.append(comparison)

    grpo = {}
    for run in runs:
        if "grpo/reward/mean" not in run.history:
            continue
        decomposition = d.reward_decomposition(run.history, run.record.config.get("reward") or {})
        decomposition["parts"] = {k: _series(v, budget) for k, v in decomposition["parts"].items()}
        decomposition["gate_rate"] = _series(decomposition["gate_rate"], budget)
        grpo[run.id] = {"decomposition": decomposition, "collapse": d.on_periods(run.history.get("grpo/collapse", [])),
                        "tasks": d.eval_task_rewards(run), "components": d.reward_components(run.history)}

    sweeps = []
    by_collection: dict[str, list[d.RunData]] = defaultdict(list)
    for run in runs:
        by_collection[run.record.collection].append(run)
    trials = d.study_trials(collection.roots)
    for name, members in by_collection.items():
        points = d.sweep_points(members)
        if points:
            if points["study"] in trials:
                points = d.add_storage_only_trials(points, trials[points["study"]])
            sweeps.append({"name": name, **points})

    dynamics = {}
    for run in runs:
        if len(dynamics) >= MAX_DYNAMICS_RUNS:
            break
        found = d.learning_dynamics(run)
        if found:
            dynamics[run.id] = found

    samples = [s for r in runs for s in d.eval_samples(r, MAX_SAMPLES_PER_RUN)]
    aggregate = d.aggregate_gates(collection.roots)
    gate_names = sorted({g for row in table for g in row["gates"]} | {g for a in aggregate for g in a["gates"]})
    payload = {
        "title": "Aegir observatory", "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "roots": [str(p) for p in collection.roots], "notices": collection.notices,
        "runs": table, "configs": configs, "metrics": metrics, "series": series, "bands": bands, "arms": arms,
        "grpo": grpo, "gate_names": gate_names, "aggregate_gates": aggregate,
        "provenance": {r.id: d.provenance(r) for r in runs}, "config_table": d.config_table(runs),
        "sweeps": sweeps, "dynamics": dynamics, "samples": samples,
        "downsample": {"points_per_series": budget},
    }
    return _round(payload)


# Every script error, unhandled rejection and console.error of the page, recorded on <html data-errors="[...]">:
# what a headless browser's DOM dump shows and the browser test asserts is empty.
_ERROR_PROBE = (
    "(function(){var errs=[];function note(m){errs.push(String(m));"
    "document.documentElement.setAttribute('data-errors',JSON.stringify(errs));}"
    "window.addEventListener('error',function(e){note(e.message||e);});"
    "window.addEventListener('unhandledrejection',function(e){note('unhandled rejection: '+(e.reason||''));});"
    "var ce=console.error;console.error=function(){note(Array.prototype.join.call(arguments,' '));"
    "return ce.apply(console,arguments);};})();"
)


def _asset(name: str) -> str:
    return resources.files("aegir.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def render_html(payload: Mapping[str, Any], live: bool = False) -> str:
    """The page: styles, plotly.js, the payload as JSON (`</` escaped so no string ends the script), the script."""
    from plotly.offline import get_plotlyjs

    blob = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str).replace("</", "<\\/")
    title = html.escape(f"{payload['title']}: {', '.join(payload['roots'])}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_asset('page.css')}</style>"
        f"<script>{_ERROR_PROBE}</script>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<script id=\"payload\" type=\"application/json\">{blob}</script>"
        f"<script>window.AEGIR_LIVE={'true' if live else 'false'};</script>"
        f"<div id=\"app\"></div><script>{_asset('page.js')}</script></body></html>\n"
    )

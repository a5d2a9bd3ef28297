"""Multi-stage runs: `stages:` chains several stages, each in its own sub-directory, each composed from the run's
overrides plus its own, a stage initialised from an earlier stage's best checkpoint.

Every stage config is composed and validated before the first stage starts, so a wrong key in the last stage is
an input error, not a failure after hours of the first.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any, Sequence

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from aegir.config import validate
from aegir.errors import InputError
from aegir.run.compose import compose_config
from aegir.run.directory import mark_ended, now, run_metadata
from aegir.run.single import run_single
from aegir.run.summary import StageResult
from aegir.rundir import RunPaths, read_json, write_json_atomic

log = logging.getLogger("aegir")


def stage_overrides(overrides: Sequence[str], spec: Any) -> list[str]:
    """A stage's overrides: the run's, then the stage's own, then `stages.<name>.set` (which wins over both, so a
    command line or a sweep can change one stage's setting: `++stages.grpo.set.algo.lr=1e-4`)."""
    return [*overrides, *spec.overrides, *(f"{k}={_override_value(v)}" for k, v in _flatten_set(spec.set))]


def _flatten_set(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested `set:` mapping as (dotted key, value) pairs."""
    if isinstance(node, dict) or OmegaConf.is_dict(node):
        return [kv for k, v in node.items() for kv in _flatten_set(v, f"{prefix}{k}.")]
    return [(prefix[:-1], node)]


def _override_value(value: Any) -> str:
    """A Python value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    text = str(value)
    if text and all(c.isalnum() or c in "_-./:" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_stages(cfg: DictConfig, overrides: list[str], paths: RunPaths, callbacks: Sequence[Any] = (),
               extra_metadata: dict[str, Any] | None = None) -> StageResult:
    """Run `cfg.stages` in order. Every stage config is composed and validated before the first one starts."""
    planned = _plan(cfg, overrides)
    fresh = not cfg.resume or not paths.metadata.exists()
    if fresh:
        write_json_atomic(paths.metadata, run_metadata(paths, cfg, overrides, kind={
            "kind": "multi_stage", "started_at": now(), "ended_at": None, "seed": cfg.seed,
            "data_seed": cfg.data_seed, "tags": list(cfg.tags),
            "stages": [{"index": i, "name": n, "dir": str(paths.stage(i, n).root)}
                       for i, (n, _, _) in enumerate(planned, 1)],
        }, extra=extra_metadata))
    results: dict[str, StageResult] = {}
    previous: str | None = None
    try:
        for index, (name, spec, stage_cfg) in enumerate(planned, 1):
            stage_paths = paths.stage(index, name)
            parent = None
            source = previous if spec.init_from == "previous" else spec.init_from
            if source:
                # the weights the parent's summary scored: best.ckpt, or its final weights when it never validated
                best = results[source].paths.best_ckpt
                best = best if best.is_file() else results[source].paths.last_ckpt
                stage_cfg.model.pretrained = str(best)
                parent = {"stage": source, "checkpoint": str(best), "run_dir": str(results[source].paths.root)}
            finished = stage_paths.summary.is_file() and read_json(stage_paths.summary).get("status") == "finished"
            if cfg.resume and finished:
                summary = read_json(stage_paths.summary)
                results[name] = StageResult(stage_paths, summary["objective"]["value"], summary)
            else:
                stage_cfg.resume = bool(cfg.resume and stage_paths.last_ckpt.is_file())
                log.info("stage %d/%d: %s -> %s", index, len(planned), name, stage_paths.root)
                results[name] = run_single(stage_cfg, stage_paths, overrides=stage_overrides(overrides, spec),
                                           parent=parent, stage={"index": index, "name": name},
                                           callbacks=callbacks, extra_metadata=extra_metadata)
            previous = name
    except InputError:
        started = any(paths.stage(i, n).metadata.exists() for i, (n, _, _) in enumerate(planned, 1))
        if fresh and not started:  # bad input before any stage began (e.g. a model that cannot be loaded): no run
            paths.metadata.unlink(missing_ok=True)
            shutil.rmtree(paths.root / "stages", ignore_errors=True)
        else:
            mark_ended(paths, "failed", reason="InputError")
        raise
    except BaseException as err:
        mark_ended(paths, "failed", reason=f"{type(err).__name__}: {err}")
        raise
    summary = _run_summary(results, planned[-1][0])
    write_json_atomic(paths.summary, summary)
    mark_ended(paths, "finished")
    return StageResult(paths, results[planned[-1][0]].objective, summary)


def _plan(cfg: DictConfig, overrides: list[str]) -> list[tuple[str, Any, DictConfig]]:
    """(name, spec, validated config) of every stage, in order; a stage's config cannot chain further stages."""
    planned: list[tuple[str, Any, DictConfig]] = []
    for name, spec in cfg.stages.items():
        try:
            raw = compose_config(stage_overrides(overrides, spec))
        except (HydraException, OmegaConfBaseException) as err:
            raise InputError(f"config error: stages.{name}.overrides: {str(err).splitlines()[0]}") from None
        with open_dict(raw):
            raw.stages = {}
            raw.resume = cfg.resume
        planned.append((name, spec, validate(raw)))
    return planned


def _run_summary(results: dict[str, StageResult], last_name: str) -> dict[str, Any]:
    """summary.json of the whole run: the last stage's objective and metrics, every stage's gates and results."""
    last = results[last_name]
    return {
        "status": "finished",
        "objective": last.summary["objective"],
        "metrics": last.summary["metrics"],
        # The last stage's within-run CIs, so the run's own summary (and its report) carries them like a one-stage run.
        "metric_stats": last.summary.get("metric_stats", {}),
        "wall_time_s": round(sum(float(r.summary.get("wall_time_s", 0.0)) for r in results.values()), 3),
        "gates": {f"{n}/{g}": v for n, r in results.items() for g, v in r.summary.get("gates", {}).items()},
        "gates_passed": all(r.summary.get("gates_passed", True) for r in results.values()),
        "gates_required": any(r.summary.get("gates_required", False) for r in results.values()),
        "stages": {n: {"dir": str(r.paths.root), "objective": r.summary["objective"],
                       "metrics": r.summary["metrics"], "metric_stats": r.summary.get("metric_stats", {}),
                       "wall_time_s": r.summary.get("wall_time_s"), "gates_passed": r.summary.get("gates_passed", True)}
                   for n, r in results.items()},
    }

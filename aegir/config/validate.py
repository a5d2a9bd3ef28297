"""`validate(cfg)`: a composed config checked against the schema before any work, or one line naming the bad key.

Order: unknown keys and wrong types (OmegaConf merging the YAML into aegir/config/schema.py), the discriminators and
the task/algo pairing, the per-family checks that span several keys, then values nobody set (`???`), then every
declared range on the resolved values. The entry points turn the InputError into exit status 2, and no run directory
exists yet when it is raised.
"""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from typing import Any, Mapping, Sequence, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from aegir.config.groups import group_defaults
from aegir.config.schema import (
    ALGO_METRICS,
    DISCRIMINATED,
    ROOT_GROUPS,
    GRPOAlgoConfig,
    STAGE_ENTRY_DEFAULTS,
    TASK_ALGOS,
    GateConfig,
    RootConfig,
    StageConfig,
)
from aegir.observe.config import observatory_problems
from aegir.schema import check_section, fail, nested_schema

log = logging.getLogger("aegir")

# Sections whose keys are free-form names validated entry by entry.
_NAMED = {"gates", "aggregate_gates", "stages"}
# Sections passed through as mappings and validated by their consumer before any work (aegir.rl.rewards).
_FREEFORM = {"reward"}
_HYDRA_KEYS = {"hydra"}


def _check_tables_task(task: dict[str, Any]) -> None:
    """The CTA/CPA data section's checks across keys (sotab root, budgets, fractions), before any work."""
    from aegir.tasks.tables.data_config import TablesDataConfig

    data = task.get("data") or {}
    if any("${" in str(value) for value in data.values()):
        return  # interpolated values are checked by the loader once resolved
    problems = TablesDataConfig(**data).problems()
    if problems:
        key, _, reason = problems[0].partition(": ")
        fail(f"task.data.{key}", reason)


def _check_hf_model(model: dict[str, Any]) -> None:
    """A Hugging Face model needs a place to load from."""
    if model.get("name_or_path") in (None, "", "???"):
        fail("model.name_or_path", "missing; a Hugging Face hub id (e.g. Polygl0t/Tucano2-qwen-0.5B-Instruct) or a "
                                   "local model directory")


def _check_observatory(resolved: dict[str, Any]) -> None:
    """The observatory's check across keys and, when it is on, the user's probe file and hard-example board (one
    line naming the file and line)."""
    obs = section_object("callbacks", resolved["callbacks"]).observatory
    for key, message in observatory_problems(obs):
        fail(f"callbacks.observatory.{key}", message)
    if obs.enabled:
        from aegir.observe.probes import check_user_files

        check_user_files(obs, str(resolved["task"]["name"]))


# Checks spanning several keys of one model family / task (single-key ranges are declared in the schema).
MODEL_CHECKS: dict[str, Any] = {"hf": _check_hf_model}
TASK_CHECKS: dict[str, Any] = {"cta": _check_tables_task, "cpa": _check_tables_task}


def _schema_at(schema: Any, path: Sequence[str]) -> Any:
    """The dataclass found by walking `path` through nested schema fields, or None."""
    for part in path:
        schema = nested_schema(get_type_hints(schema).get(part)) if schema is not None else None
    return schema


def _keys_of(schema: Any) -> list[str]:
    return sorted(f.name for f in fields(schema)) if schema is not None else []


def allowed_keys(path: str) -> list[str]:
    """Keys allowed at a dotted config path (for error messages), or [] if the path is not a structured section."""
    parts = [p for p in path.split(".") if p]
    if not parts:
        return sorted([f.name for f in fields(RootConfig)] + list(DISCRIMINATED) + sorted(_NAMED | _FREEFORM))
    if parts[0] in DISCRIMINATED:  # the first registered schema stands for the section's shape
        return _keys_of(_schema_at(next(iter(DISCRIMINATED[parts[0]][1].values())), parts[1:]))
    return _keys_of(_schema_at(RootConfig, parts))


def _merge_section(schema: type, node: Any, prefix: str) -> DictConfig:
    """Merge one config section into its schema, translating OmegaConf's multi-line errors into one line."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        full = ".".join(part for part in (prefix, key) if part)
        msg = str(err).splitlines()[0]
        if isinstance(err, ConfigKeyError):
            allowed = _keys_of(_schema_at(schema, key.split(".")[:-1]))
            fail(full, f"unknown key; allowed keys here: {', '.join(allowed)}")
        fail(full, msg)
    raise AssertionError("unreachable")


def section_schema(section: str, values: Mapping[str, Any]) -> type:
    """The schema of a top-level section (by its discriminator for model/task/algo)."""
    if section in DISCRIMINATED:
        disc, registry = DISCRIMINATED[section]
        kind = values.get(disc)
        if kind not in registry:
            fail(f"{section}.{disc}", f"'{kind}' is not one of: {', '.join(sorted(registry))}")
        return registry[kind]
    if section in ROOT_GROUPS:
        return ROOT_GROUPS[section]
    raise KeyError(section)


def section_object(section: str, values: Mapping[str, Any]) -> Any:
    """A resolved section as its typed dataclass instance: what loops, models and tasks receive."""
    plain = OmegaConf.to_container(values, resolve=True) if OmegaConf.is_config(values) else dict(values)
    schema = section_schema(section, plain)  # type: ignore[arg-type]
    typed = _merge_section(schema, plain, section)
    for missing in sorted(OmegaConf.missing_keys(typed)):
        fail(f"{section}.{missing}", "missing value")
    check_section(plain, schema, section)  # type: ignore[arg-type]
    return OmegaConf.to_object(typed)


def load_group(group: str, option: str, **overrides: Any) -> Any:
    """An option's section as its typed schema object, with `overrides` merged on top (interpolations resolved
    against nothing: for sections that need `${paths...}`, compose a whole run instead)."""
    values = OmegaConf.merge(group_defaults(group, option), overrides)
    return section_object(group, OmegaConf.to_container(values, resolve=True))  # type: ignore[arg-type]


def validate(cfg: DictConfig) -> DictConfig:
    """Return a typed, struct-mode copy of a composed config, or raise InputError naming the bad key."""
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    out: dict[str, Any] = {}
    root_names = {f.name for f in fields(RootConfig)}
    for key in container:
        if key not in root_names | set(DISCRIMINATED) | _NAMED | _FREEFORM | _HYDRA_KEYS:
            fail(key, f"unknown top-level key; allowed: {', '.join(allowed_keys(''))}")
    root_part = {k: v for k, v in container.items() if k in root_names}
    out.update(OmegaConf.to_container(_merge_section(RootConfig, root_part, ""), resolve=False))  # type: ignore[arg-type]
    for section in DISCRIMINATED:
        node = container.get(section)
        if not isinstance(node, dict):
            fail(section, "missing; choose one from its config group, e.g. `" + section + "=...`")
        out[section] = OmegaConf.to_container(_merge_section(section_schema(section, node), node, section),
                                              resolve=False)
    algos = TASK_ALGOS[out["task"]["name"]]
    if out["algo"]["name"] not in algos:
        fail("algo", f"task {out['task']['name']} trains with algo={' or algo='.join(algos)}, "
                     f"not algo={out['algo']['name']}")
    prefixes, usual = ALGO_METRICS.get(out["algo"]["name"], ((), ""))
    metric = str(out["objective"]["metric"])
    if prefixes and "${" not in metric and not metric.startswith(prefixes):
        fail("objective.metric", f"algo={out['algo']['name']} does not log '{metric}' (it logs "
                                 f"{', '.join(p + '*' for p in prefixes)}); e.g. {usual}")
    reward = container.get("reward") or {}
    if not isinstance(reward, dict):
        fail("reward", "must be a mapping {components, gate, workers, timeout_s, pass_rates, catalog_reload}")
    out["reward"] = reward
    out["gates"] = _validate_gates(container.get("gates") or {})
    out["aggregate_gates"] = _validate_gates(container.get("aggregate_gates") or {}, "aggregate_gates")
    out["stages"] = _validate_stages(container.get("stages") or {})
    if out["model"]["arch"] in MODEL_CHECKS:
        MODEL_CHECKS[out["model"]["arch"]](out["model"])
    typed = OmegaConf.create(out)
    for missing in sorted(OmegaConf.missing_keys(typed)):
        fail(missing, "missing value; set it on the command line or in its conf/ option file")
    try:
        # Resolve every interpolation now so a dangling `${...}` fails here and not mid-run.
        resolved = OmegaConf.to_container(typed, resolve=True)
    except OmegaConfBaseException as err:
        fail(getattr(err, "full_key", "") or "?", str(err).splitlines()[0])
    assert isinstance(resolved, dict)
    _check_ranges(resolved)
    _check_observatory(resolved)
    if out["task"]["name"] in TASK_CHECKS:
        TASK_CHECKS[out["task"]["name"]](resolved["task"])
    if out["algo"]["name"] == "grpo":
        for notice in grpo_knob_notices(section_object("algo", resolved["algo"])):
            log.warning("config notice: %s", notice)
    if "hydra" in container:
        typed.hydra = container["hydra"]
    OmegaConf.set_struct(typed, True)
    return typed


def _check_ranges(resolved: dict[str, Any]) -> None:
    """Every range and closed set the schema declares, on the resolved values."""
    check_section(resolved, RootConfig, "")
    for section in DISCRIMINATED:
        check_section(resolved[section], section_schema(section, resolved[section]), section)
    for section in ("gates", "aggregate_gates"):
        for name, gate in resolved[section].items():
            if name != "required":
                check_section(gate, GateConfig, f"{section}.{name}")


def grpo_knob_notices(algo: GRPOAlgoConfig) -> list[str]:
    """One line per GRPO knob set away from conf/algo/grpo.yaml's value where the chosen mode ignores it (a
    notice, not an error: the run is valid, the knob is just inert). Also refuses a `delta` that does not clear
    the upper clip with a one-line config error."""
    if algo.delta is not None and not algo.delta > 1.0 + algo.clip_eps_high:
        fail("algo.delta", f"{algo.delta} must be > 1 + algo.clip_eps_high = {1.0 + algo.clip_eps_high} (or null "
                           "to disable)")
    default = group_defaults("algo", "grpo")
    notices = []
    if algo.advantage in ("gdpo", "rloo") and algo.scale_rewards != default["scale_rewards"]:
        notices.append(f"algo.scale_rewards={algo.scale_rewards} has no effect under algo.advantage={algo.advantage} "
                       "(only advantage=grpo scales by a std; gdpo always normalises per component, then over the "
                       "batch; rloo never scales)")
    if algo.entropy_coef == 0.0 and algo.entropy_norm != default["entropy_norm"]:
        notices.append(f"algo.entropy_norm={algo.entropy_norm} has no effect with algo.entropy_coef=0")
    if algo.kl_coef == 0.0 and algo.kl_estimator != default["kl_estimator"]:
        notices.append(f"algo.kl_estimator={algo.kl_estimator} has no effect with algo.kl_coef=0 (no KL term)")
    if algo.importance_sampling_level == "sequence" and algo.loss_type != "grpo":
        notices.append(f"algo.importance_sampling_level=sequence with algo.loss_type={algo.loss_type} "
                       "weights each sequence by its length; GSPO is loss_type=grpo")
    return notices


def _validate_gates(node: Any, section: str = "gates") -> dict[str, Any]:
    """`gates` (per run) or `aggregate_gates` (on a multirun's aggregate): the same declaration."""
    if not isinstance(node, dict):
        fail(section, "must be a mapping of gate names to {metric, op, value} plus an optional `required` flag")
    out: dict[str, Any] = {"required": False}
    for name, spec in node.items():
        if name == "required":
            if not isinstance(spec, bool):
                fail(f"{section}.required", f"must be true or false, got {spec!r}")
            out["required"] = spec
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            fail(f"{section}.{name}", "gate names may use letters, digits, '_', '.', '-'")
        gate = OmegaConf.to_container(_merge_section(GateConfig, spec, f"{section}.{name}"))
        assert isinstance(gate, dict)
        check_section(gate, GateConfig, f"{section}.{name}")
        for key in ("metric", "op", "value"):
            if gate[key] == "???":
                fail(f"{section}.{name}.{key}", "missing; a gate is {metric: e.g. val/bpb, op: one of < <= > >= == !=, "
                                            "value: a number}")
        out[name] = gate
    return out


def _validate_stages(node: Any) -> dict[str, Any]:
    if not isinstance(node, dict):
        fail("stages", "must be a mapping of stage names to {overrides, init_from}")
    out: dict[str, Any] = {}
    names: list[str] = []
    for name, spec in node.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            fail(f"stages.{name}", "stage names may use letters, digits, '_', '-'")
        if spec is not None and not isinstance(spec, dict):
            fail(f"stages.{name}", "must be a mapping {overrides, init_from, set}")
        merged = _merge_section(StageConfig, {**STAGE_ENTRY_DEFAULTS, **(spec or {})}, f"stages.{name}")
        stage = OmegaConf.to_container(merged)
        assert isinstance(stage, dict)
        src = stage["init_from"]
        if src not in (None, "previous") and src not in names:
            fail(f"stages.{name}.init_from", f"'{src}' is not an earlier stage; earlier: {', '.join(names) or 'none'}")
        if src == "previous" and not names:
            stage["init_from"] = None
        out[name] = stage
        names.append(name)
    return out

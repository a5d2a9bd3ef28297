"""One declaration per key: the schema (types, ranges) and the YAML (defaults, meanings) cover the same keys, no
default is stated twice, and every range check fails with one line naming the full key path."""

from __future__ import annotations

from dataclasses import fields

import pytest

from aegir.config import group_defaults
from aegir.config.explain import option_keys, root_keys
from aegir.config.groups import CONF_DIR, group_options, option_bases, own_values
from aegir.config.schema import DISCRIMINATED, ROOT_GROUPS, RootConfig
from aegir.config.validate import validate
from aegir.errors import InputError
from aegir.schema import has_default, schema_fields

SCHEMA_GROUPS = [*DISCRIMINATED, *ROOT_GROUPS]
OPTIONS = [(group, option) for group in SCHEMA_GROUPS for option in group_options(group)]
# Mappings whose entries are data (task names), not schema keys.
DATA_MAPPINGS = ("n_per_task", "eval_minimums", "sampler.initial")


def _all_schemas() -> set[type]:
    out: set[type] = {RootConfig}
    for _, registry in DISCRIMINATED.values():
        out |= set(registry.values())
    todo = list(out)
    while todo:
        schema = todo.pop()
        from aegir.schema import nested_schema
        from typing import get_type_hints

        for hint in get_type_hints(schema).values():
            inner = nested_schema(hint)
            if inner is not None and inner not in out:
                out.add(inner)
                todo.append(inner)
    return out


def _leaf_keys(values: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, value in values.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, dict) and value and not path.endswith(DATA_MAPPINGS):
            out |= _leaf_keys(value, path)
        else:
            out.add(path)
    return out


def test_no_schema_field_states_a_default() -> None:
    stated = [f"{schema.__name__}.{f.name}" for schema in _all_schemas() for f in fields(schema) if has_default(f)]
    assert stated == [], "defaults belong in conf/ YAML only"


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_sets_exactly_the_schema_keys(group: str, option: str) -> None:
    values = group_defaults(group, option)
    if group in DISCRIMINATED:
        disc, registry = DISCRIMINATED[group]
        schema = registry[values[disc]]
    else:
        schema = ROOT_GROUPS[group]
    declared = set(schema_fields(schema))
    in_yaml = _leaf_keys(values)
    assert in_yaml - declared == set(), f"conf/{group}/{option}.yaml sets keys the schema does not declare"
    assert declared - in_yaml == set(), f"conf/{group}/{option}.yaml leaves schema keys without a default"


def test_config_yaml_sets_exactly_the_root_keys() -> None:
    own = own_values("", "config")
    root = {f.name for f in fields(RootConfig)} - set(ROOT_GROUPS)
    assert set(own) - {"gates", "aggregate_gates", "stages"} == root


@pytest.mark.parametrize("group,option", [(g, o) for g, o in OPTIONS if option_bases(g, o)])
def test_an_option_built_on_a_base_restates_no_value_of_it(group: str, option: str) -> None:
    base: dict = {}
    for name in option_bases(group, option):
        base.update(group_defaults(group, name))
    own = own_values(group, option)

    def restated(mine: dict, theirs: dict, prefix: str = "") -> list[str]:
        out = []
        for name, value in mine.items():
            if isinstance(value, dict) and isinstance(theirs.get(name), dict):
                out += restated(value, theirs[name], f"{prefix}{name}.")
            elif name in theirs and theirs[name] == value and name != "name":
                out.append(f"{prefix}{name}")
        return out

    assert restated(own, base) == [], f"conf/{group}/{option}.yaml restates its base's defaults"


@pytest.mark.parametrize("group", SCHEMA_GROUPS)
def test_every_key_has_a_meaning_beside_its_default(group: str) -> None:
    missing = [info.path for option in group_options(group) for info in option_keys(group, option)
               if not info.meaning]
    assert missing == []


def test_every_root_key_has_a_meaning() -> None:
    assert [info.path for info in root_keys() if not info.meaning] == []


@pytest.mark.parametrize("override,key,fragment", [
    ("algo.kl_coef=-0.1", "algo.kl_coef", "must be >= 0, got -0.1"),
    ("algo.group_size=0", "algo.group_size", "must be >= 2, got 0"),
    ("algo.temperature=0", "algo.temperature", "must be > 0, got 0.0"),
    ("algo.top_p=1.5", "algo.top_p", "must be in (0, 1], got 1.5"),
    ("algo.lr=nan", "algo.lr", "must be a finite number, got nan"),
    ("algo.sampler.improvement.up=0.5", "algo.sampler.improvement.up", "must be >= 1"),
    ("algo.delta=1.1", "algo.delta", "must be > 1 + algo.clip_eps_high"),
    ("algo.top_entropy_quantile=0", "algo.top_entropy_quantile", "must be in (0, 1]"),
    ("model.head_size=0", "model.head_size", "must be >= 1"),
    ("callbacks.observatory.calibration.bins=0", "callbacks.observatory.calibration.bins", "must be >= 1, got 0"),
    ("callbacks.observatory.hard_examples.max_new_tokens=0", "callbacks.observatory.hard_examples.max_new_tokens",
     "must be >= 1, got 0"),
])
def test_range_errors_name_the_full_key(compose, override: str, key: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        validate(compose(["+experiment=grpo_toy", override], fast=False) if override.startswith("algo")
                 else compose([override]))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"config error: {key}:"), message
    assert fragment in message, message


def test_conf_dir_is_the_repositorys() -> None:
    assert (CONF_DIR / "config.yaml").is_file()


def test_negative_heldout_classes_is_a_range_error(compose) -> None:
    with pytest.raises(InputError) as info:
        validate(compose(["task=pretrain", "task.heldout_classes=-1"]))
    message = str(info.value)
    assert "\n" not in message and message.startswith("config error: task.heldout_classes:"), message
    assert "must be >= 0, got -1" in message, message

"""`python -m aegir.config explain KEY`: a key's type, default, range and meaning, without opening the code.

    python -m aegir.config explain algo.kl_coef     # one key, in every option of its group that has it
    python -m aegir.config explain algo             # a group: its options and every key
    python -m aegir.config explain algo=grpo        # one option's keys
    python -m aegir.config explain seed             # a top-level key of conf/config.yaml

Types and ranges come from aegir/config/schema.py, defaults and meanings from the YAML under conf/.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from omegaconf import OmegaConf

from aegir.config.groups import CONF_DIR, group_defaults, group_options, key_comments, option_bases, option_file
from aegir.config.schema import DISCRIMINATED, ROOT_GROUPS, RootConfig
from aegir.errors import InputError
from aegir.schema import range_text, schema_fields, type_text

GROUPS = ("model", "task", "arm", "algo", "reward", "trainer", "logger", "callbacks", "paths")


@dataclass
class KeyInfo:
    path: str
    type: str
    range: str
    default: Any
    meaning: str


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict) and values and not prefix.endswith(("n_per_task", "eval_minimums", "initial")):
        out: dict[str, Any] = {}
        for name, value in values.items():
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else str(name)))
        return out
    return {prefix: values}


def _meaning(group: str, option: str, subkey: str) -> str:
    """The comment beside `subkey` in the option file, else in the bases it builds on."""
    comment = key_comments(option_file(group, option)).get(subkey, "")
    if comment:
        return comment
    for base in option_bases(group, option):
        comment = _meaning(group, base, subkey)
        if comment:
            return comment
    return ""


def _schema_of(group: str, values: dict[str, Any]) -> type | None:
    if group in DISCRIMINATED:
        disc, registry = DISCRIMINATED[group]
        return registry.get(values.get(disc))  # type: ignore[arg-type]
    return ROOT_GROUPS.get(group)


def option_keys(group: str, option: str) -> list[KeyInfo]:
    """Every key one option of a group sets, with type, range, default and meaning."""
    values = group_defaults(group, option)
    schema = _schema_of(group, values)
    declared = schema_fields(schema) if schema is not None else {}
    flat = _flatten(values)
    out = []
    for subkey in sorted(set(flat) | set(declared), key=lambda k: list(flat).index(k) if k in flat else 1e9):
        annotation, meta = declared.get(subkey, (None, {}))
        out.append(KeyInfo(f"{group}.{subkey}", type_text(annotation) if annotation is not None else "",
                           range_text(meta) if meta else "", flat.get(subkey, "???"), _meaning(group, option, subkey)))
    return out


def root_keys() -> list[KeyInfo]:
    """The top-level keys of conf/config.yaml (everything but the groups)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"), resolve=False)
    assert isinstance(raw, dict)
    raw.pop("defaults", None)
    comments = key_comments(CONF_DIR / "config.yaml")
    groups = set(ROOT_GROUPS)
    declared = {k: v for k, v in schema_fields(RootConfig).items() if k.split(".")[0] not in groups}
    flat = {k: v for k, v in _flatten(raw).items()}
    for name in ("gates", "aggregate_gates", "stages"):  # free-form sections: documented as a whole
        flat[name] = raw.get(name, {})
    out = []
    for path in list(dict.fromkeys([*flat, *declared])):
        annotation, meta = declared.get(path, (None, {}))
        out.append(KeyInfo(path, type_text(annotation) if annotation is not None else "mapping",
                           range_text(meta) if meta else "", flat.get(path, "???"), comments.get(path, "")))
    return out


def _format(info: KeyInfo, option: str | None = None) -> str:
    parts = [info.type or "any"]
    if info.range:
        parts.append(info.range)
    head = f"{info.path}  ({', '.join(parts)})"
    where = f" [{option}]" if option else ""
    return f"{head}\n  default{where}: {_yaml(info.default)}\n  {info.meaning or '(no comment in conf/)'}"


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def explain(query: str) -> str:
    """The text `explain` prints for a key, a group or `group=option`; InputError for an unknown one."""
    query = query.strip()
    if "=" in query:
        group, option = query.split("=", 1)
        if group not in GROUPS:
            raise InputError(f"explain: {group}: not a config group; groups: {', '.join(GROUPS)}")
        option_file(group, option)
        return "\n".join([f"{group}={option} (conf/{group}/{option}.yaml)", ""] +
                         [_format(info) for info in option_keys(group, option)])
    if query in GROUPS:
        lines = [f"{query}: options {', '.join(group_options(query))} (conf/{query}/); "
                 f"`explain {query}=OPTION` lists one option's keys", ""]
        seen: dict[str, list[str]] = {}
        infos: dict[str, KeyInfo] = {}
        for option in group_options(query):
            for info in option_keys(query, option):
                seen.setdefault(info.path, []).append(option)
                infos.setdefault(info.path, info)
        for path, options in seen.items():
            info = infos[path]
            scope = "" if len(options) == len(group_options(query)) else f"  [{', '.join(options)}]"
            lines.append(f"{path:<40} {info.type or 'any':<16} {info.meaning[:90]}{scope}")
        return "\n".join(lines)
    group = query.split(".", 1)[0]
    if group in GROUPS:
        found = [(option, info) for option in group_options(group) for info in option_keys(group, option)
                 if info.path == query or info.path.startswith(query + ".")]
        if found:
            return _explain_across_options(query, found)
        candidates = sorted({info.path for option in group_options(group) for info in option_keys(group, option)})
    else:
        infos = [info for info in root_keys() if info.path == query or info.path.startswith(query + ".")]
        if infos:
            return "\n".join(_format(info) for info in infos)
        candidates = [info.path for info in root_keys()] + list(GROUPS)
    close = difflib.get_close_matches(query, candidates, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise InputError(f"explain: {query}: no such config key{hint}")


def _explain_across_options(query: str, found: list[tuple[str, KeyInfo]]) -> str:
    """One block per key; the default per option when options differ."""
    lines = []
    for path in dict.fromkeys(info.path for _, info in found):
        rows = [(option, info) for option, info in found if info.path == path]
        first = rows[0][1]
        parts = [first.type or "any"] + ([first.range] if first.range else [])
        lines.append(f"{path}  ({', '.join(parts)})")
        defaults = {option: _yaml(info.default) for option, info in rows}
        if len(set(defaults.values())) == 1 and len(rows) > 1:
            lines.append(f"  default: {next(iter(defaults.values()))} (in {', '.join(defaults)})")
        else:
            for option, value in defaults.items():
                lines.append(f"  default [{path.split('.')[0]}={option}]: {value}")
        meanings = {option: info.meaning or "(no comment in conf/)" for option, info in rows}
        if len(set(meanings.values())) == 1:
            lines.append(f"  {next(iter(meanings.values()))}")
        else:  # the options describe the key differently (e.g. classify's lr is the head's)
            lines += [f"  [{path.split('.')[0]}={option}] {meaning}" for option, meaning in meanings.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "explain":
        print("usage: python -m aegir.config explain KEY | GROUP | GROUP=OPTION   (e.g. explain algo.kl_coef)",
              file=sys.stderr)
        return 2
    try:
        print(explain(args[1]))
    except InputError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0


__all__ = ["KeyInfo", "explain", "main", "option_keys", "root_keys"]

"""The YAML side of the config: group option files under conf/, where every default and its meaning live.

`group_defaults("algo", "grpo")` composes one option file with the same-group bases of its `defaults:` list (as
Hydra does), for code and tests that need a section without composing a whole run (aegir/config/validate.py's
`load_group` returns it as the typed schema object). `key_comments` reads the comment written beside each key, which `explain` prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aegir.errors import InputError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def option_file(group: str, option: str) -> Path:
    path = CONF_DIR / group / f"{option}.yaml" if group else CONF_DIR / f"{option}.yaml"
    if not path.is_file():
        options = ", ".join(group_options(group)) if group else "config"
        raise InputError(f"config error: {group}={option}: no such option; options: {options}")
    return path


def group_options(group: str) -> list[str]:
    """The option names of a config group (the YAML files of conf/<group>/)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def option_bases(group: str, option: str) -> list[str]:
    """The same-group options an option file builds on (its `defaults:` list, `_self_` left out)."""
    raw = OmegaConf.to_container(OmegaConf.load(option_file(group, option)), resolve=False)
    assert isinstance(raw, dict)
    return [str(entry) for entry in raw.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]


def own_values(group: str, option: str) -> dict[str, Any]:
    """The keys an option file itself sets (its `defaults:` list removed)."""
    raw = OmegaConf.to_container(OmegaConf.load(option_file(group, option)), resolve=False)
    assert isinstance(raw, dict)
    raw.pop("defaults", None)
    return raw


def group_defaults(group: str, option: str) -> dict[str, Any]:
    """The section one option of a group gives a run: its bases, then the file itself, merged (unresolved)."""
    merged = OmegaConf.create({})
    for base in option_bases(group, option):
        merged = OmegaConf.merge(merged, group_defaults(group, base))
    merged = OmegaConf.merge(merged, own_values(group, option))
    out = OmegaConf.to_container(merged, resolve=False)
    assert isinstance(out, dict)
    return out


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.]*):(?P<rest>.*)$")


def key_comments(path: Path) -> dict[str, str]:
    """`dotted.key -> meaning` for one YAML file: the comment on a key's line (and the comment lines under it that
    are indented past the key), or else the comment block right above the key."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    current: str | None = None
    current_indent = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            indent = len(line) - len(line.lstrip(" "))
            if current is not None and indent > current_indent and comments.get(current):
                comments[current] += " " + stripped.lstrip("#").strip()
            else:
                current = None
                above.append(stripped.lstrip("#").strip())
            continue
        match = _KEY_LINE.match(line)
        if not match or not stripped:
            above, current = [], None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([name for _, name in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        trailing = match["rest"].split(" #", 1)[1].strip() if " #" in match["rest"] else ""
        if match["rest"].strip().startswith("#"):
            trailing = match["rest"].strip().lstrip("#").strip()
        comments[dotted] = trailing or " ".join(above)
        above, current, current_indent = [], dotted, indent
    return comments

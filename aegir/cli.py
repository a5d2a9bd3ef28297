"""How run.py reports errors: one line naming the key for a config error, and the exit status
`aegir.exit_status` gives the error (0 finished, 1 run failed, 2 input error, 3 required gate failed)."""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Callable, TypeVar

from aegir.exit_status import CONFIG_ERRORS, ONE_LINE_ERRORS, exit_status

T = TypeVar("T")


def format_config_error(err: BaseException) -> str:
    """One line naming the key and what is allowed, from Hydra's / OmegaConf's multi-line messages."""
    # Imported here, not at the top: aegir.config pulls in torch and pandas, which run.py does not need to start.
    from aegir.config import allowed_keys

    text = str(err)
    cause = err.__cause__
    full = text + ("\n" + str(cause) if cause else "")
    match = re.search(r"Could not override '([^']+)'", full)
    if match and ("not in struct" in full or "Could not append" in full or "No match" in full):
        key = match.group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = allowed_keys(parent)
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"config error: {key}: unknown key{hint}"
    match = re.search(r"Could not find '([^']+)'", full)
    if match:
        options = re.findall(r"^\t(\S+)$", full, flags=re.MULTILINE)
        group = match.group(1).rsplit("/", 1)
        where = f"{group[0]}={group[1]}" if len(group) == 2 else match.group(1)
        return f"config error: {where}: no such config{'; available: ' + ', '.join(options) if options else ''}"
    first = next((line.strip() for line in full.splitlines() if line.strip()), type(err).__name__)
    key = re.search(r"full_key: (\S+)", full)
    return f"config error: {key.group(1) + ': ' if key else ''}{first}"


def exit_on_user_errors(function: Callable[..., T]) -> Callable[..., T]:
    """Wrap a Hydra task function: input errors and failed required gates exit here, inside the job, so Hydra
    adds no "Error executing job" banner and the user reads exactly one line."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except ONE_LINE_ERRORS as err:
            print(f"aegir: {err}", file=sys.stderr, flush=True)
            sys.exit(exit_status(err))

    return wrapper


def main_with_exit_codes(entry: Callable[[], object]) -> None:
    """Run a Hydra entry point, turning input errors into one line and exit status 2 (gate failures: 3)."""
    # Let exceptions reach us instead of Hydra's own reporter, which prints several lines and exits 1.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        entry()
    except CONFIG_ERRORS as err:
        print(f"aegir: {format_config_error(err)}", file=sys.stderr)
        sys.exit(exit_status(err))

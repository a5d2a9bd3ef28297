"""Exit statuses of the command-line entry points (docs/run_directory.md, Exit statuses).

    0  finished
    1  the run failed while working (traceback; metadata.json status `failed` with the reason)
    2  the user's input is wrong (config key or type, data file, checkpoint path): one line, no traceback
    3  a required gate failed (everything was saved first)
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Callable, TypeVar

from aegir.errors import INPUT_ERROR_EXIT_CODE, InputError

T = TypeVar("T")


def format_config_error(err: BaseException) -> str:
    """One line naming the key and what is allowed, from Hydra's / OmegaConf's multi-line messages."""
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
    from aegir.main import GateFailedError

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except InputError as err:
            print(f"aegir: {err}", file=sys.stderr, flush=True)
            sys.exit(INPUT_ERROR_EXIT_CODE)
        except GateFailedError as err:
            print(f"aegir: {err}", file=sys.stderr, flush=True)
            sys.exit(GateFailedError.exit_code)

    return wrapper


def main_with_exit_codes(entry: Callable[[], object]) -> None:
    """Run a Hydra entry point, turning input errors into one line and exit status 2 (gate failures: 3)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # Let exceptions reach us instead of Hydra's own reporter, which prints several lines and exits 1.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        entry()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"aegir: {format_config_error(err)}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)

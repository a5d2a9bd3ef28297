"""Error types that separate *the user's input is wrong* from *the run failed while working*.

`InputError` is raised for bad configs, data files, checkpoint paths: the entry points catch it, print one
line naming what and where, and exit with status 2 without a traceback. `GateFailedError` is raised once a run
with `gates.required=true` has written everything and a gate failed. `DivergedError` is raised when the loss or the
objective stops being a finite number: the run is `failed` (exit 1) with a one-line reason, not a traceback.
Everything else is a real failure. The status each error exits with is decided in one place, `aegir.exit_status`.
"""


class InputError(Exception):
    """The user's input (config key, data file, checkpoint path, ...) is wrong; the message says what and where."""


class GateFailedError(Exception):
    """A gate failed under `gates.required=true`; raised after the run directory is complete."""


class DivergedError(Exception):
    """The training loss or the objective became NaN or infinite; the message says which and at which step."""

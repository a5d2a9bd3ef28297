"""Exit statuses of Aegir's commands, and the one place that maps an error to its status.

    0  FINISHED      finished
    1  RUN_FAILED    the run failed while working (traceback, or one line for a divergence; metadata.json status
                     `failed` with the reason)
    2  INPUT_ERROR   the user's input is wrong (config key or type, data file, checkpoint path): one line, no traceback
    3  GATE_FAILED   a required gate failed (everything was saved first)

Every entry point (run.py through `aegir.cli`, `aegir.resume`, `aegir.sweep`, `aegir.audit`, `aegir.export`,
`aegir.models.hf_tiny`) returns or exits with these names, and turns an exception into a status with
`exit_status`, so a new error type gets its status here and nowhere else.
"""

from __future__ import annotations

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from aegir.errors import DivergedError, GateFailedError, InputError

FINISHED = 0
RUN_FAILED = 1
INPUT_ERROR = 2
GATE_FAILED = 3

# Errors Hydra / OmegaConf raise while composing or reading a config: the user's config is wrong.
CONFIG_ERRORS: tuple[type[BaseException], ...] = (HydraException, OmegaConfBaseException)

# Errors the user sees as one line, without a traceback (the run itself did not fail).
ONE_LINE_ERRORS: tuple[type[BaseException], ...] = (InputError, GateFailedError, DivergedError)

# Exception type -> status; the first type an error is an instance of decides. Anything else: RUN_FAILED.
STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (InputError, INPUT_ERROR),
    (GateFailedError, GATE_FAILED),
    *((kind, INPUT_ERROR) for kind in CONFIG_ERRORS),
)


def exit_status(err: BaseException) -> int:
    """The status a command exits with when `err` ends it."""
    for kind, status in STATUS_OF:
        if isinstance(err, kind):
            return status
    return RUN_FAILED

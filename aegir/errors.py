"""Error types that separate *the user's input is wrong* from *the run failed while working* (docs/run_directory.md).

`InputError` is raised for bad configs, data files, checkpoint paths: the entry points catch it, print one
line naming what and where, and exit with status 2 without a traceback. Everything else is a real failure.
"""


class InputError(Exception):
    """The user's input (config key, data file, checkpoint path, ...) is wrong; the message says what and where."""


INPUT_ERROR_EXIT_CODE = 2

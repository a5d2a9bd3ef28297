"""Checks shared by the readers of the user's data files: what a path points at, and what a JSON line holds.

Each failure is an :class:`~aegir.errors.InputError` naming the file (and line): one line on the console, exit
status 2, never a traceback, a hang on a FIFO or a crash much later when a lone surrogate reaches the UTF-8 encoder.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from aegir.errors import InputError


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _mode(path: Path, what: str) -> int:
    """`stat` of `path` (no open: opening a FIFO for reading blocks until a writer comes); InputError if unreadable."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read the {what} ({error.strerror or error})") from None


def regular_file(path: Path | str, what: str = "file") -> Path:
    """`path` if it is a regular file (a symlink to one is fine); else an InputError saying what it is instead."""
    path = Path(path)
    mode = _mode(path, what)
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: is {_kind(mode)}, not a {what}")
    return path


def not_a_special_file(path: Path | str, what: str = "file or directory") -> Path:
    """`path` if it is a regular file or a directory; a FIFO, device or socket is an InputError."""
    path = Path(path)
    mode = _mode(path, what)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{path}: is {_kind(mode)}, not a {what}")
    return path


def parse_json_line(line: str, where: str, syntax_error: str = "invalid JSON: {msg} (column {col})") -> Any:
    """``json.loads(line)`` with the failures of hostile lines as InputErrors naming ``where`` ("file:line").

    * invalid JSON: `syntax_error` filled with the parser's message and column;
    * nesting deeper than Python's recursion limit (``[[[[...]]]]``): "nested too deeply" instead of a
      RecursionError traceback;
    * a string holding a lone surrogate (``"\\ud800"`` is valid JSON but not Unicode): refused here, instead of
      crashing whatever encodes it as UTF-8 later (the tokenizer, a JSON writer).
    """
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: " + syntax_error.format(msg=error.msg, col=error.colno)) from None
    except RecursionError:
        raise InputError(f"{where}: invalid JSON: nested too deeply") from None
    _check_unicode(value, where)
    return value


def _check_unicode(value: Any, where: str) -> None:
    """Every string (keys included) of a parsed JSON value encodes as UTF-8; iterative, so depth costs no stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                bad = text[error.start]
                raise InputError(f"{where}: invalid JSON: a lone surrogate \\u{ord(bad):04x} in a string is not "
                                 f"valid Unicode") from None

"""Errors a user can meet. Each carries the problem, the fix and an exit code.

The CLI prints ``str(error)`` as one red line; nothing below the CLI prints.
"""

from __future__ import annotations

import re

# Line breaks and terminal escapes (C0/C1 controls, U+2028/9) that user input could smuggle
# into a message: shown escaped, so a message stays one line and cannot drive the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


MAX_PART = 600  # characters of a problem or fix: a message is one line to read, not a dump


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...), at most
    ``MAX_PART`` characters."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= MAX_PART else text[:MAX_PART - 3] + "..."


class AezooError(Exception):
    """A problem the user can fix. ``exit_code`` 1: runtime, 2: usage."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = one_line(problem)
        self.fix = one_line(fix) if fix else fix
        super().__init__(f"{self.problem}: {self.fix}" if self.fix else self.problem)


class UsageError(AezooError):
    """Bad input from the command line or a spec (exit code 2)."""

    exit_code = 2


class SpecError(UsageError):
    """A spec value or override that does not validate; ``key`` is the dotted path of the
    first invalid value, when known."""

    def __init__(self, problem: str, fix: str | None = None, key: str | None = None) -> None:
        super().__init__(problem, fix)
        self.key = key


class UnknownNameError(UsageError):
    """A variant, component or dataset name nobody provides."""


class PluginError(AezooError):
    """A plugin failed to import or provides something that is not a component."""


class ShapeError(UsageError):
    """A component cannot serve the requested input shape."""


class CheckpointError(AezooError):
    """A model file that is missing, corrupt or not an aezoo checkpoint."""


class DeviceError(UsageError):
    """A device that does not exist on this machine."""


class DataError(AezooError):
    """A dataset that cannot be found or read."""


class OutputExistsError(UsageError):
    """An output that would overwrite something already saved."""


class RunDirBusyError(AezooError):
    """Another process is writing this run directory (exit code 1: retry later)."""


class WriteError(AezooError):
    """An output that cannot be written (full disk, read-only, gone): a runtime failure,
    not a usage error, so exit code 1."""


class ExportError(AezooError):
    """An exported model that does not reproduce PyTorch, or an exporter that failed."""


class AezooWarning(UserWarning):
    """Something the user should know that does not stop the command (one line)."""


def summary(exc: BaseException, *, with_type: bool = True, limit: int = 300) -> str:
    """One line about ``exc``: ``TypeName: first line of its message`` (or just the first
    line), at most ``limit`` characters. The only way aezoo quotes a foreign exception."""
    text = next(iter(str(exc).strip().splitlines()), "").strip()
    if not text:
        text = type(exc).__name__
    elif with_type:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."

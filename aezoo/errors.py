"""Errors a user can meet. Each carries the problem, the fix and an exit code.

The CLI prints ``str(error)`` as one red line; nothing below the CLI prints.
"""

from __future__ import annotations


class AezooError(Exception):
    """A problem the user can fix. ``exit_code`` 1: runtime, 2: usage."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}: {fix}" if fix else problem)


class UsageError(AezooError):
    """Bad input from the command line or a spec (exit code 2)."""

    exit_code = 2


class SpecError(UsageError):
    """A spec value or override that does not validate."""


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

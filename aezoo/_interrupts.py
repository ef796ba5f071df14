"""Ctrl-C: the user's told apart from plugin code raising KeyboardInterrupt itself; the
``aezoo`` program's handling of an early or late Ctrl-C; work that finishes once started."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class _SigintHandler:
    """Its ``_handler`` takes SIGINT inside the ``with`` (in the main thread, where signals
    are delivered); ``seen``: whether one came."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def __enter__(self) -> _SigintHandler:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class UserInterrupts(_SigintHandler):
    """Notes a real SIGINT while plugin code runs, so a plugin that raises
    KeyboardInterrupt itself is told apart from the user pressing Ctrl-C."""

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        if callable(self._previous):
            self._previous(signum, frame)
        else:
            raise KeyboardInterrupt


# -- Ctrl-C in the aezoo program ----------------------------------------------------------
# A KeyboardInterrupt raised inside an import (numpy's, torch's) can leave a half-imported
# module behind, or be swallowed by the imported code's own ``except:``; what follows is an
# ``AttributeError`` from nowhere, or an interrupt that was ignored. So in the ``aezoo``
# program a Ctrl-C while it starts, or during any import, ends it at once (exit 130, one
# line; nothing has been written then that a later step would clean up), one while a
# command runs is a KeyboardInterrupt as usual, and one after the command has finished is
# ignored (what it did is done). In a library user's process nothing here is installed.

_STARTING, _RUNNING, _FINISHED = "starting", "running", "finished"
_phase: str | None = None  # None: not the aezoo program


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _program_handler(signum: int, frame: Any) -> None:
    if _phase == _FINISHED:
        return
    if _phase == _STARTING or _importing(frame):
        os.write(2, b"error: interrupted\n")
        os._exit(130)
    raise KeyboardInterrupt


def guard_program() -> None:
    """Install the program's SIGINT handler (call it first thing in the ``aezoo`` program)."""
    global _phase
    if threading.current_thread() is not threading.main_thread():
        return
    _phase = _STARTING
    signal.signal(signal.SIGINT, _program_handler)


def command_started() -> None:
    global _phase
    if _phase is not None:
        _phase = _RUNNING


def command_finished() -> None:
    """The command's work is done (e.g. the final model is saved): later Ctrl-Cs are moot."""
    global _phase
    if _phase is not None:
        _phase = _FINISHED


class Deferred(_SigintHandler):
    """A first SIGINT inside is noted, not raised (``seen``); a second one raises as usual.

    For work that should finish once started, such as the final save of a run."""

    def _handler(self, signum: int, frame: Any) -> None:
        if self.seen:
            raise KeyboardInterrupt
        self.seen = True

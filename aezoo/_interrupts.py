"""Telling the user's Ctrl-C apart from plugin code that raises KeyboardInterrupt itself."""

from __future__ import annotations

import signal
import threading
from typing import Any


class UserInterrupts:
    """Notes a real SIGINT while plugin code runs, so a plugin that raises
    KeyboardInterrupt itself is told apart from the user pressing Ctrl-C."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def __enter__(self) -> UserInterrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        if callable(self._previous):
            self._previous(signum, frame)
        else:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

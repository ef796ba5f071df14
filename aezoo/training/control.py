"""When training stops early: SIGINT/SIGTERM, stops agreed across DDP ranks, NaN/inf,
and the errors that tell a user so.

On CPU (one process) the NaN guard and the stop flag are checked every step, which is
free there; on an accelerator or under DDP the losses of the last steps stay on the
device in a window, looked at (and, under DDP, the ranks vote on stopping) at the next
sync point, so a step never waits for the host.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any

import torch

from aezoo import distributed
from aezoo.errors import AezooError


class Stop(str, Enum):
    """Why the loop stops early (a str: the names read as before, e.g. ``"SIGINT"``)."""

    REQUESTED = "stop"  # trainer.request_stop: after the current epoch
    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"

    def __str__(self) -> str:
        return str(self.value)


class TrainingError(AezooError):
    """Training cannot go on (e.g. the loss diverged)."""


class TrainingInterrupted(AezooError):
    """Stopped by SIGINT/SIGTERM after a step; the run directory can be resumed."""

    exit_code = 130


SIGNAL_CODES = {Stop.SIGINT: 130, Stop.SIGTERM: 143}  # exit codes of an interrupted run
# Agreed across ranks: highest wins.
_STOP_CODES = {Stop.REQUESTED: 1, Stop.SIGINT: 2, Stop.SIGTERM: 3}
_BY_CODE = {code: stop for stop, code in _STOP_CODES.items()}
_NO_BAD_STEP = 2**62


class Diverged(Exception):
    """The loss became NaN/inf at global ``step`` (the loop turns it into a TrainingError)."""

    def __init__(self, step: int) -> None:
        self.step = step


MAX_WINDOW = 4096  # steps between sync points at most, whatever check_every says

class Control:
    """The stop flag, the signal received and the NaN/inf guard of one trainer."""

    def __init__(self, device: torch.device, dist: distributed.Dist, check_every: int) -> None:
        self.device = device
        self.dist = dist
        self.stop: Stop | None = None
        self.signal: Stop | None = None
        # Check NaN per step on one CPU process (free); elsewhere keep the losses of the
        # last steps on the device and look at them at the next sync point.
        self.eager = device.type == "cpu" and not dist.enabled
        # The window holds the losses between sync points: none where each step is checked
        # eagerly, and at most MAX_WINDOW (check_every=10**8 once asked for gigabytes).
        self.check_every = min(check_every, MAX_WINDOW)
        self.window = torch.zeros(0 if self.eager else self.check_every, device=device)
        self.since_check = 0

    def reset(self) -> None:
        self.stop = self.signal = None

    def request_stop(self) -> None:
        self.stop = self.stop or Stop.REQUESTED

    @property
    def interrupted(self) -> bool:
        """A signal stopped the loop (it breaks after the current step)."""
        return self.stop is not None and self.stop != Stop.REQUESTED

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: finish the current step, then stop (a second SIGINT aborts)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal = Stop(signal.Signals(signum).name)
            if not self.dist.enabled:  # under DDP the ranks agree at the next sync point
                self.stop = self.signal

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def check(self, loss: torch.Tensor, global_step: int) -> None:
        """Guard the (detached) loss of step ``global_step``, before the optimiser step."""
        if self.eager:
            if not math.isfinite(loss.item()):  # before the step: weights stay good
                raise Diverged(global_step)
        else:
            if self.window.numel() < self.check_every:  # first use (eager turned off)
                self.window = torch.zeros(self.check_every, device=self.device)
            self.window[self.since_check] = loss
            self.since_check += 1

    def after_step(self, global_step: int, sync_every: int) -> None:
        """A sync point once the window is full, and at each step checkpoint."""
        if not self.eager and (self.since_check == self.check_every
                               or (sync_every and global_step % sync_every == 0)):
            self.sync_point(global_step)

    def at_epoch_end(self, global_step: int) -> None:
        """The epoch's last sync point: no step goes unchecked."""
        if not self.eager and self.since_check:
            self.sync_point(global_step)

    def sync_point(self, global_step: int) -> None:
        """Look at the recent losses (and, under DDP, agree on stopping). Syncs."""
        recent = self.window[: self.since_check]
        first = global_step - self.since_check + 1
        self.since_check = 0
        bad = torch.nonzero(~torch.isfinite(recent))
        local_bad = first + int(bad[0, 0]) if len(bad) else _NO_BAD_STEP
        if not self.dist.enabled:
            if local_bad != _NO_BAD_STEP:
                raise Diverged(local_bad)
            return
        code = _STOP_CODES.get(self.signal, 0) if self.signal is not None else 0
        agreed = distributed.all_reduce(
            torch.tensor([local_bad, -code], dtype=torch.int64, device=self.device), "min")
        bad_step, code = int(agreed[0]), -int(agreed[1])
        if bad_step != _NO_BAD_STEP:
            raise Diverged(bad_step)
        if code:
            self.stop = _BY_CODE[code]


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` is finite, in one sync: their max-norm (torch's
    ``get_total_norm``, foreach kernels where torch has them) is NaN or inf exactly where a
    value is (a max cannot overflow)."""
    values = [t.detach() for t in tensors if t.numel()]
    if not values:
        return True
    total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch 2.6+: foreach
    if total_norm is not None:
        return bool(total_norm(values, math.inf).isfinite())
    norms = [torch.linalg.vector_norm(t, math.inf) for t in values]
    return bool(torch.stack(norms).isfinite().all())  # stack promotes mixed dtypes


def interrupted(stop: Stop, global_step: int, epoch: int, step: int,
                steps_per_epoch: int) -> TrainingInterrupted:
    """The error of a run stopped by ``stop`` (a signal) after ``global_step``."""
    error = TrainingInterrupted(
        f"{stop}: training stopped after step {global_step} "
        f"(epoch {epoch}, step {step}/{steps_per_epoch})",
        "the state is saved; continue with `aezoo train --resume RUN_DIR`")
    error.exit_code = SIGNAL_CODES.get(stop, 130)
    return error


def diverged(step: int, steps_per_epoch: int, resumable: bool) -> TrainingError:
    """The error of a run whose loss became NaN/inf at ``step``; ``resumable``: a state
    to resume from exists (saved or loaded)."""
    epoch = (step - 1) // steps_per_epoch + 1
    remedy = ("lower --lr, add --grad-clip 1.0, use --precision 32 (or bf16 instead of 16), "
              "or check the data")
    if not resumable:  # say what is true: nothing to resume
        return TrainingError(
            f"the loss became NaN/inf at step {step} (epoch {epoch}), before the first "
            "checkpoint; training stopped and nothing was saved",
            f"{remedy}; then train again (with --force to reuse RUN_DIR)")
    return TrainingError(
        f"the loss became NaN/inf at step {step} (epoch {epoch}); training stopped and "
        "the last good checkpoint is kept", f"{remedy}; then --resume RUN_DIR with those flags")

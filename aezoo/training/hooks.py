"""The callback contract: the hooks a trainer calls, what an epoch reports, why it ended.

The protocol (every hook optional; a plain object with some of these methods works):

- ``on_train_start(trainer)`` / ``on_train_end(trainer)`` — once; at the end
  ``trainer.outcome`` says why training ended: ``completed``, ``stopped`` (early
  stopping), ``interrupted`` (SIGINT/SIGTERM), ``diverged`` (NaN/inf) or ``failed``.
- ``on_epoch_start(trainer, epoch)`` / ``on_epoch_end(trainer, result)``; ``result`` is an
  ``EpochResult`` (``aezoo.epochs``, re-exported here): one row of ``metrics.jsonl``.
- ``on_step_start(trainer, step)`` / ``on_step_end(trainer, step, images)`` — around each
  optimiser step; ``step`` counts from 1 within the epoch, ``trainer.global_step`` over
  the run, ``images`` are this process's images so far this epoch. These run in the hot
  loop: keep them cheap and never read a device tensor there (it syncs; see
  ``trainer.running_loss()`` for the deliberate exception).
- ``on_before_optimizer_step(trainer, optimizer)`` — gradients are complete (accumulated,
  unscaled under fp16, clipped); the step has not happened: inspect or edit gradients.
- ``on_validation_start(trainer)`` / ``on_validation_end(trainer, metrics)`` — around
  each epoch's validation; ``metrics`` holds ``loss`` and each term.

``trainer.log(name, value)`` (a number or a device tensor, no sync) adds a value to the
epoch's log: the mean over the epoch's calls, across ranks, appears as ``name`` in
``metrics.jsonl``/``metrics.csv`` and the epoch result's ``terms``.

Attributes a callback may set: ``all_ranks = True`` to run on every process of a
distributed run (default: rank 0 only, which also owns all files), and ``state_key``
with ``state_dict()``/``load_state_dict(d)`` (JSON-able) to be saved in
``state.safetensors`` and restored on ``--resume``. ``trainer.request_stop(reason)``
ends training after the current epoch.

Plugins add callbacks through the ``aezoo.callbacks`` entry-point group; the entry
point is a callable taking the run directory (``factory(out_dir)``); ``--callback NAME``
enables it (see docs/training.md). aezoo's own callbacks come through it too.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from aezoo.epochs import EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

HOOKS = ("on_train_start", "on_epoch_start", "on_step_start", "on_before_optimizer_step",
         "on_step_end", "on_validation_start", "on_validation_end", "on_epoch_end",
         "on_train_end")


class Outcome(str, Enum):
    """``trainer.outcome``. A str, so ``trainer.outcome == "interrupted"`` keeps working."""

    NEW = "new"  # not fitted yet
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # trainer.request_stop (early stopping)
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM
    DIVERGED = "diverged"  # NaN/inf loss
    FAILED = "failed"  # any other exception

    def __str__(self) -> str:  # the value, as a plain str would print
        return str(self.value)


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    all_ranks: bool = False
    state_key: str | None = None

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_step_start(self, trainer: Trainer, step: int) -> None: ...

    def on_before_optimizer_step(self, trainer: Trainer, optimizer: Any) -> None:
        """Gradients are final; the optimiser has not stepped. Must not sync."""

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        """After each optimiser step; ``images`` seen so far this epoch. Must not sync."""

    def on_validation_start(self, trainer: Trainer) -> None: ...

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def defines(callback: Any, hook: str) -> bool:
    """Whether ``callback`` has ``hook``, other than Callback's no-op (skipped: the hot loop
    then calls only hooks that do something)."""
    if not hasattr(callback, hook):
        return False
    own = getattr(type(callback), hook, None)
    return own is None or own is not getattr(Callback, hook)

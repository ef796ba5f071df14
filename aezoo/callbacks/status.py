"""``status.json``: how the training process ended, and the run in a few numbers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aezoo.epochs import EpochResult, best, finite
from aezoo.fileio import atomic_write
from aezoo.rundir import STATUS_FILE
from aezoo.training.hooks import Callback

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class StatusWriter(Callback):
    """``status.json``: ``running`` while training, then the outcome (completed, stopped,
    interrupted, diverged, failed), the epoch reached and the wall time of this process,
    and what picks the best epoch (``monitor``, ``mode``: ``train.monitor`` and its
    direction as the trainer resolved it). ``aezoo runs`` reads it (with the directory's
    lock, which says whether it still runs)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / STATUS_FILE
        self._start = time.time()
        self._params = 0

    def _write(self, trainer: Trainer, outcome: str, totals: dict[str, Any] | None = None) -> None:
        done = trainer.history[-1].epoch if trainer.history else 0
        status = {"outcome": outcome, "epochs_done": done, "epochs": trainer.spec.epochs,
                  "global_step": trainer.global_step, "started": self._start,
                  "updated": time.time(), "stop_reason": trainer.stop_reason,
                  "params": self._params, "monitor": trainer.spec.monitor,
                  "mode": trainer.mode, **({"summary": totals} if totals else {})}
        data = (json.dumps(status) + "\n").encode()

        def write() -> None:
            try:
                atomic_write(self.path, data)
            except OSError:  # a status line is not worth failing (or masking) a run for
                pass

        trainer.files.submit(write)  # after the files handed over before it

    def on_train_start(self, trainer: Trainer) -> None:
        self._start = time.time()
        self._params = sum(p.numel() for p in trainer.model.parameters())
        self._write(trainer, "running")

    def on_train_end(self, trainer: Trainer) -> None:
        self._write(trainer, str(trainer.outcome),
                    summary(trainer.history, trainer.spec.monitor, trainer.mode))


def summary(history: list[EpochResult], monitor: str = "val_loss",
            mode: Literal["min", "max"] = "min") -> dict[str, Any]:
    """The history in a few numbers (aezoo runs reads these instead of metrics.jsonl):
    the best epoch by ``monitor`` (what best.safetensors holds) and its val_loss."""
    found = best(history, monitor, mode)
    last = history[-1].val_loss if history else None
    return {"epochs_done": history[-1].epoch if history else 0,
            "seconds": sum(r.seconds for r in history),
            "val_loss": found[0].val_loss if found and finite(found[0].val_loss) else None,
            "best_epoch": found[0].epoch if found else None,
            "last_val_loss": last if finite(last) else None}


def status(out_dir: str | Path) -> StatusWriter:
    """The ``status`` callback: ``status.json`` in ``out_dir``."""
    return StatusWriter(out_dir)

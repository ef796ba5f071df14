"""``images/curves.png`` (redrawn every few seconds while training and at its end), and
``status.json``: how the training process ended."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo._io import atomic_write
from aezoo.rundir import CURVES_FILE, IMAGES_DIR, STATUS_FILE
from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

REDRAW_SECONDS = 5.0  # at most one drawing of the curves in this long while training


def row(result: EpochResult) -> dict[str, Any]:
    """A metrics.jsonl row of ``result`` (the columns the curves draw)."""
    return {"epoch": result.epoch, "train_loss": result.train_loss,
            "val_loss": result.val_loss, "lr": result.lr, **result.terms}


class CurvesWriter(Callback):
    """Redraws ``images/curves.png`` from the trainer's history at most every ``interval``
    seconds and once at the end of training, atomically, so it can be opened at any time.
    The drawing (matplotlib: see ``aezoo.curves``) runs on the run's writer thread: an
    epoch only files its row and reads the clock."""

    def __init__(self, out_dir: str | Path, interval: float = REDRAW_SECONDS) -> None:
        self.out = Path(out_dir)
        self.path = self.out / IMAGES_DIR / CURVES_FILE
        self.interval = interval
        self._rows: dict[int, dict[str, Any]] = {}
        self._drawn = 0.0  # time.monotonic() when the last drawing finished
        self._drawing = False  # one handed over and not finished: the next epoch skips
        self._upto = 0  # the last epoch drawn

    def on_train_start(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows = {r.epoch: row(r) for r in trainer.history}
        self._drawn, self._upto = time.monotonic(), 0

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        self._rows[result.epoch] = row(result)  # a re-trained epoch replaces its old row
        if not self._drawing and time.monotonic() - self._drawn >= self.interval:
            self._draw(trainer, result.epoch)

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.history and trainer.history[-1].epoch != self._upto:
            self._draw(trainer, trainer.history[-1].epoch)

    def _draw(self, trainer: Trainer, last: int) -> None:
        rows = [self._rows[e] for e in sorted(self._rows) if e <= last]
        self._drawing, self._upto = True, last

        def draw() -> None:
            from aezoo.curves import run_curves, write_picture

            try:
                write_picture(self.path, run_curves(rows, title=self.out.name))
            finally:
                self._drawn, self._drawing = time.monotonic(), False

        trainer.files.submit(draw)


def curves(out_dir: str | Path) -> CurvesWriter:
    """The ``curves`` callback: ``images/curves.png`` in ``out_dir``."""
    return CurvesWriter(out_dir)


class StatusWriter(Callback):
    """``status.json``: ``running`` while training, then the outcome (completed, stopped,
    interrupted, diverged, failed), the epoch reached and the wall time of this process.
    ``aezoo runs`` reads it (with the directory's lock, which says whether it still runs)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / STATUS_FILE
        self._start = time.time()
        self._params = 0

    def _write(self, trainer: Trainer, outcome: str,
               totals: dict[str, Any] | None = None) -> None:
        done = trainer.history[-1].epoch if trainer.history else 0
        status = {"outcome": outcome, "epochs_done": done, "epochs": trainer.spec.epochs,
                  "global_step": trainer.global_step, "started": self._start,
                  "updated": time.time(), "stop_reason": trainer.stop_reason,
                  "params": self._params, **({"summary": totals} if totals else {})}
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
        self._write(trainer, str(trainer.outcome), summary(trainer.history))


def summary(history: list[EpochResult]) -> dict[str, Any]:
    """The history in a few numbers (aezoo runs reads these instead of metrics.jsonl)."""
    finite = [r for r in history if math.isfinite(r.val_loss)]
    best = min(finite, key=lambda r: r.val_loss) if finite else None
    last = history[-1].val_loss if history else math.nan
    return {"epochs_done": history[-1].epoch if history else 0,
            "seconds": sum(r.seconds for r in history),
            "val_loss": best.val_loss if best else None,
            "best_epoch": best.epoch if best else None,
            "last_val_loss": last if math.isfinite(last) else None}


def status(out_dir: str | Path) -> StatusWriter:
    """The ``status`` callback: ``status.json`` in ``out_dir``."""
    return StatusWriter(out_dir)

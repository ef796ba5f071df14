"""``images/curves.png`` each epoch, and ``status.json``: how the training process ended."""

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


def row(result: EpochResult) -> dict[str, Any]:
    """A metrics.jsonl row of ``result`` (the columns the curves draw)."""
    return {"epoch": result.epoch, "train_loss": result.train_loss,
            "val_loss": result.val_loss, "lr": result.lr, **result.terms}


class CurvesWriter(Callback):
    """Redraws ``images/curves.png`` from the trainer's history after every epoch (a few
    milliseconds: see ``aezoo.curves``), atomically, so it can be opened at any time."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.path = self.out / IMAGES_DIR / CURVES_FILE
        self._rows: dict[int, dict[str, Any]] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows = {r.epoch: row(r) for r in trainer.history}

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        from aezoo.curves import run_curves, write_picture

        self._rows[result.epoch] = row(result)  # a re-trained epoch replaces its old row
        rows = [self._rows[e] for e in sorted(self._rows) if e <= result.epoch]
        picture = run_curves(rows, title=self.out.name)
        trainer.files.submit(lambda: write_picture(self.path, picture))


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

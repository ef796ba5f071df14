"""``images/curves.png``: redrawn every few seconds while training and at its end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from aezoo.rundir import CURVES_FILE, IMAGES_DIR
from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

REDRAW_SECONDS = 5.0  # at most one drawing of the curves in this long while training


class CurvesWriter(Callback):
    """Redraws ``images/curves.png`` from the trainer's history at most every ``interval``
    seconds and once at the end of training, atomically, so it can be opened at any time.
    The drawing (matplotlib: see ``aezoo.curves``) runs on the run's writer thread: an
    epoch only reads the clock."""

    def __init__(self, out_dir: str | Path, interval: float = REDRAW_SECONDS) -> None:
        self.out = Path(out_dir)
        self.path = self.out / IMAGES_DIR / CURVES_FILE
        self.interval = interval
        self._drawn = 0.0  # time.monotonic() when the last drawing finished
        self._drawing = False  # one handed over and not finished: the next epoch skips
        self._upto = 0  # the last epoch drawn

    def on_train_start(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drawn, self._upto = time.monotonic(), 0
        trainer.files.submit(_import_matplotlib)  # ~0.7 s of CPU, overlapping epoch 1

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        if not self._drawing and time.monotonic() - self._drawn >= self.interval:
            self._draw(trainer, result.epoch)

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.history and trainer.history[-1].epoch != self._upto:
            self._draw(trainer, trainer.history[-1].epoch)

    def _draw(self, trainer: Trainer, last: int) -> None:
        from aezoo.epochs import best

        rows = [r.row() for r in trainer.history if r.epoch <= last]
        found = best(rows, trainer.spec.monitor, trainer.mode)
        best_epoch = found[0]["epoch"] if found else None
        self._drawing, self._upto = True, last

        def draw() -> None:
            from aezoo.curves import run_curves, write_picture

            try:
                write_picture(self.path, run_curves(rows, self.out.name, best_epoch))
            finally:
                self._drawn, self._drawing = time.monotonic(), False

        trainer.files.submit(draw)


def _import_matplotlib() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401 - what aezoo.curves draws with
    import matplotlib.figure  # noqa: F401


def curves(out_dir: str | Path) -> CurvesWriter:
    """The ``curves`` callback: ``images/curves.png`` in ``out_dir``."""
    return CurvesWriter(out_dir)

"""Callbacks that write the run directory's files: metrics, checkpoints, images."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.epochs import COLUMNS
from aezoo.fileio import atomic_write_many
from aezoo.rundir import (
    BEST_FILE,
    IMAGES_DIR,
    LAST_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    STATE_FILE,
    epoch_image,
)
from aezoo.training.hooks import Callback, EpochResult, Outcome

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class MetricsWriter(Callback):
    """One row per epoch in ``metrics.jsonl`` and ``metrics.csv``.

    Both files are rewritten atomically from the trainer's history (a few hundred bytes
    per epoch), so a crash never leaves half a line, and on resume an epoch logged after
    the last checkpoint (and trained again) never appears twice.
    """

    def __init__(self, path: str | Path, csv_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.csv_path = Path(csv_path) if csv_path is not None else self.path.with_suffix(".csv")

    def on_train_start(self, trainer: Trainer) -> None:
        self._rewrite(trainer)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        self._rewrite(trainer)

    def _rewrite(self, trainer: Trainer) -> None:
        history = trainer.history
        rows = [r.row() for r in history]
        jsonl = "".join(json.dumps(r) + "\n" for r in rows).encode()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        columns = [*COLUMNS, *dict.fromkeys(name for r in history for name in r.terms)]
        writer.writerow(columns)
        writer.writerows([r.get(c, "") for c in columns] for r in rows)
        # Here, not on trainer.files: resume needs these durable when the epoch ends.
        atomic_write_many([(self.path, jsonl), (self.csv_path, buf.getvalue().encode())])


def metrics(out_dir: str | Path) -> MetricsWriter:
    """The ``metrics`` callback: ``metrics.jsonl`` and ``metrics.csv`` in ``out_dir``."""
    out = Path(out_dir)
    return MetricsWriter(out / METRICS_JSONL, out / METRICS_CSV)


class Checkpointer(Callback):
    """``last``, ``best`` (by ``train.monitor``: val_loss unless set) and ``state``
    safetensors in ``out_dir``.

    Written at each epoch end, every ``every`` optimiser steps, and when training is
    interrupted; never after the loss diverged (the last good files stay). Enabled as the
    ``checkpoint`` callback, it takes ``every`` from the trainer's spec.
    """

    state_key = "checkpointer"

    def __init__(self, out_dir: str | Path, every: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.every = every  # None: the trainer spec's checkpoint_every
        self.best = math.inf

    def on_train_start(self, trainer: Trainer) -> None:
        self.every = self.every or trainer.spec.checkpoint_every

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best if math.isfinite(self.best) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = math.inf if state.get("best") is None else float(state["best"])

    def save(self, trainer: Trainer, finite: bool | None = None, best: bool = False) -> None:
        """``last`` (and, with ``best``, ``best``: the same bytes, one file hard-linked
        twice), committed together, then ``state``. That order keeps the state (and the
        best val_loss it records) never ahead of the model files."""
        from aezoo._safetensors import write_files
        from aezoo.checkpoint import encode
        if not (trainer.weights_finite() if finite is None else finite):
            return  # never replace a good checkpoint with a bad one
        with trainer.averaged():  # with train.ema, the model files hold the average
            model = encode(trainer.model)
        names = [BEST_FILE, LAST_FILE] if best else [LAST_FILE]
        # Durable before this returns (not on trainer.files): a kill a step later resumes here.
        write_files([(self.out_dir / name, model) for name in names])
        trainer.save_state(self.out_dir / STATE_FILE)

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        if self.every and trainer.global_step % self.every == 0 and step < trainer.steps_per_epoch:
            self.save(trainer)  # the trainer checked for NaN at this step (a sync point)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        finite = trainer.weights_finite()
        score = trainer.score(result)  # train.monitor, lower better (val_loss by default)
        improved = score < self.best and finite
        if improved:
            self.best = score
        self.save(trainer, finite, best=improved)

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.outcome == Outcome.INTERRUPTED:
            self.save(trainer)


ROW_LABELS = ("original", "reconstruction")


class ImageWriter(Callback):
    """``images/epoch-NNNN.png``: validation images (top) and reconstructions (bottom),
    each row named in a margin on its left."""

    def __init__(self, out_dir: str | Path, n: int = 10, scale: int = 2) -> None:
        self.dir = Path(out_dir) / IMAGES_DIR
        self.n = n
        self.scale = scale

    def on_train_start(self, trainer: Trainer) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        from aezoo.training.validation import reconstructions
        from aezoo.viz import grid, labelled, write_png

        images = trainer.val_images[: self.n]
        recon = reconstructions(trainer, self.n)  # usually the epoch's validation made them
        path = self.dir / epoch_image(result.epoch)
        picture = labelled(grid(images, recon, scale=self.scale), ROW_LABELS,
                           images.shape[-2] * self.scale)
        # Level 1: a third of level 6's time for a file ~15% larger, written every epoch.
        trainer.files.submit(lambda: write_png(path, picture, level=1))

"""Early stopping: end training once ``train.monitor`` (val_loss) stops improving."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class EarlyStopping(Callback):
    """Stop when ``train.monitor`` (val_loss unless set) has not improved by ``min_delta``
    for ``patience`` epochs.

    ``None`` for either: the trainer spec's ``patience`` / ``min_delta``, read at train
    start (no patience there either: it never stops).
    """

    all_ranks = True  # every rank must stop at the same epoch
    state_key = "early_stopping"

    def __init__(self, patience: int | None = None, min_delta: float | None = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.wait = 0

    def on_train_start(self, trainer: Trainer) -> None:
        if self.patience is None:
            self.patience = trainer.spec.patience
        if self.min_delta is None:
            self.min_delta = trainer.spec.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best if math.isfinite(self.best) else None, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = math.inf if state.get("best") is None else float(state["best"])
        self.wait = int(state.get("wait", 0))

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        score = trainer.score(result)  # train.monitor, lower better (val_loss by default)
        if score < self.best - (self.min_delta or 0.0):
            self.best, self.wait = score, 0
            return
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            best = -self.best if trainer.mode == "max" else self.best
            trainer.request_stop(f"early stopping: {trainer.spec.monitor} has not improved "
                                 f"for {self.patience} epoch(s) (best {best:.5f})")


def early_stopping(out_dir: str | Path) -> EarlyStopping:
    """The ``early-stopping`` callback: patience and min_delta from the trainer's spec."""
    return EarlyStopping(patience=None, min_delta=None)

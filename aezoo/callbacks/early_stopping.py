"""Early stopping: end training once val_loss stops improving."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class EarlyStopping(Callback):
    """Stop when val_loss has not improved by ``min_delta`` for ``patience`` epochs."""

    all_ranks = True  # every rank must stop at the same epoch
    state_key = "early_stopping"

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best if math.isfinite(self.best) else None, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = math.inf if state.get("best") is None else float(state["best"])
        self.wait = int(state.get("wait", 0))

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        if result.val_loss < self.best - self.min_delta:
            self.best, self.wait = result.val_loss, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.request_stop(f"early stopping: val_loss has not improved for "
                                 f"{self.patience} epoch(s) (best {self.best:.5f})")

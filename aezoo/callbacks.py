"""Trainer callbacks. The loop holds no logging code: progress, metrics files and the
like are callbacks with these hooks (every hook is optional)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aezoo.trainer import Trainer


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured (one line of metrics.jsonl)."""

    epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    images_per_s: float


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        """After each optimiser step; ``images`` seen so far this epoch. Must not sync."""

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class MetricsWriter(Callback):
    """Appends one JSON line per epoch to ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: Trainer) -> None:
        self.path.write_text("")

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(asdict(result)) + "\n")

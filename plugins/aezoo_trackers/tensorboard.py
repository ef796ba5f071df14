"""TensorBoard scalars (the optional ``tensorboard`` extra): ``--callback tensorboard``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.epochs import EpochResult
from aezoo.rundir import TENSORBOARD_DIR
from aezoo.training.hooks import Callback
from aezoo_trackers.tracking import needs

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class TensorBoardLogger(Callback):
    """Per-epoch losses, learning rate and speed as TensorBoard scalars in ``OUT/tensorboard``.

    Needs the optional extra: ``pip install 'aezoo[tensorboard]'``.
    """

    writer: Any = None

    def __init__(self, out_dir: str | Path) -> None:
        self.tensorboard = needs("tensorboard", "torch.utils.tensorboard")
        self.log_dir = Path(out_dir) / TENSORBOARD_DIR

    def on_train_start(self, trainer: Trainer) -> None:
        # purge_step: a resumed run drops events logged after its checkpoint
        self.writer = self.tensorboard.SummaryWriter(str(self.log_dir),
                                                     purge_step=len(trainer.history) + 1)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        for key, value in result.row().items():
            if key not in ("epoch", "seconds"):  # losses, lr, speed and every term
                self.writer.add_scalar(key, value, result.epoch)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()

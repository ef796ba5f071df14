"""TensorBoard scalars (the optional ``tensorboard`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.errors import UsageError
from aezoo.rundir import TENSORBOARD_DIR
from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class TensorBoardLogger(Callback):
    """Per-epoch losses, learning rate and speed as TensorBoard scalars in ``OUT/tensorboard``.

    Needs the optional extra: ``pip install 'aezoo[tensorboard]'``.
    """

    def __init__(self, out_dir: str | Path) -> None:
        try:  # imported here, when asked for: fail before any data is loaded
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("the tensorboard callback needs the tensorboard package",
                             "pip install 'aezoo[tensorboard]'") from None
        self.summary_writer = SummaryWriter
        self.log_dir = Path(out_dir) / TENSORBOARD_DIR
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        # purge_step: a resumed run drops events logged after its checkpoint
        self.writer = self.summary_writer(str(self.log_dir), purge_step=len(trainer.history) + 1)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        for key in ("train_loss", "val_loss", "lr", "images_per_s"):
            self.writer.add_scalar(key, getattr(result, key), result.epoch)
        for key, value in result.terms.items():
            self.writer.add_scalar(key, value, result.epoch)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()

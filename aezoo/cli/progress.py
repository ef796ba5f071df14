"""Training progress: a rich bar on a terminal, one plain line per epoch elsewhere."""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aezoo.cli.common import PipeSafeConsole, drop_output, warn
from aezoo.epochs import column, terms_of
from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

REFRESH_SECONDS = 0.5  # reading the loss syncs with the device: only this often
CLOSED_NOTICE = ("stdout was closed; training goes on without progress lines (each epoch "
                 "is in the run directory's metrics.jsonl)")


def line(result: EpochResult, epochs: int, show_lr: bool = False) -> str:
    """The epoch line; ``show_lr`` adds the rate the epoch ended at (when it changes)."""
    terms = "".join(f"  {name} {result.terms[name]:.5f}"  # the terms of val_loss
                    for name in (column("val", t) for t in terms_of(result.terms)))
    lr = f"  lr {result.lr:.3g}" if show_lr else ""
    return (f"epoch {result.epoch}/{epochs}  train_loss {result.train_loss:.5f}  "
            f"val_loss {result.val_loss:.5f}{terms}{lr}  {result.seconds:.1f}s  "
            f"{result.images_per_s:,.0f} img/s")


class ProgressCallback(Callback):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self._last = 0.0
        self._start = 0.0
        self._done_before = 0  # images of a resumed epoch trained before the resume
        if isinstance(console, PipeSafeConsole):  # a closed stdout is said once, on stderr
            console.closed_notice = CLOSED_NOTICE

    def say(self, text: str, **kwargs: Any) -> None:
        """Print a progress line; a closed output (``| head``) never stops training."""
        try:
            self.console.print(text, **kwargs)
        except OSError as exc:  # rich >= 13.8 passes BrokenPipeError to on_broken_pipe;
            # older rich raises it, and an EPIPE surfacing otherwise ends up here
            if not (isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE):
                raise
            if isinstance(self.console, PipeSafeConsole):
                self.console.on_broken_pipe()  # falls quiet, says so once on stderr
            else:
                self.console.quiet = True
                drop_output(self.console.file)

    def on_train_start(self, trainer: Trainer) -> None:
        spec = trainer.spec
        auto = " (auto)" if spec.precision == "auto" else ""
        layout = "channels_last" if trainer.memory_format == torch.channels_last else "NCHW"
        self.say(
            f"training on {trainer.device} ({trainer.dist.world_size} process"
            f"{'es' if trainer.dist.world_size > 1 else ''}): {trainer.data.splits()['train']:,} "
            f"images, batch {spec.batch_size}, precision {trainer.precision}{auto}, {layout}",
            highlight=False, soft_wrap=True)
        self.say(trainer.reader.describe(), highlight=False, soft_wrap=True)
        for warning in trainer.resume_warnings:  # the core's; said here, on stderr
            warn(warning)
        if trainer.resumed:
            self.say(f"resuming at epoch {trainer.epoch}, step {trainer.step}/"
                     f"{trainer.steps_per_epoch} (step {trainer.global_step} of the run)",
                     highlight=False)
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._start = time.perf_counter()
        self._done_before = min(trainer.step * trainer.spec.batch_size,
                                len(trainer.train_images))
        if self.progress is not None:
            for task in list(self.progress.task_ids):
                self.progress.remove_task(task)
            self.progress.add_task("train", total=len(trainer.train_images),
                                   epoch=f"{epoch}/{trainer.spec.epochs}", loss="…", speed="")

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self._last < REFRESH_SECONDS:
            return
        self._last = now
        speed = (images - self._done_before) / max(now - self._start, 1e-9)
        self.progress.update(self.progress.task_ids[0], completed=images,
                             loss=f"{trainer.running_loss():.4f}", speed=f"{speed:,.0f} img/s")

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        spec = trainer.spec  # the rate is shown when a schedule or a warm-up changes it
        self.say(line(result, spec.epochs, spec.scheduler != "none" or bool(spec.warmup)),
                 highlight=False, soft_wrap=True)
        from aezoo.data.stream_folder import skipped_images

        skipped = skipped_images(trainer.data)
        if skipped is not None and trainer.dist.is_main:
            count, first = skipped
            warn(f"skipped {count:,} unreadable image{'s' * (count != 1)} so far "
                 f"(--skip-bad-images; first: {first})")

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

"""A sweep trial's reporter: each epoch's metric to the trial, and pruning through the
epoch hook. Duck-typed on the trial (``report(value, step)``, ``should_prune()``), so the
training layer never imports Optuna (``aezoo.sweep`` owns it)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aezoo.errors import UsageError
from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


def epoch_values(result: EpochResult) -> dict[str, float]:
    """Every per-epoch value of ``result`` by its ``metrics.jsonl`` name."""
    return {"train_loss": result.train_loss, "val_loss": result.val_loss, "lr": result.lr,
            "images_per_s": result.images_per_s, "seconds": result.seconds, **result.terms}


class MetricUnknown(UsageError):
    """The sweep's metric is not among a run's per-epoch values (every trial would fail)."""


class TrialReporter(Callback):
    """Reports ``metric`` after every epoch to ``trial``; when the pruner says so, asks the
    trainer to stop after this epoch (the checkpoint callback, always last, saves it first)
    with a stop reason that ``status.json`` records."""

    def __init__(self, trial: Any, metric: str, pruner: str = "the pruner") -> None:
        self.trial = trial
        self.metric = metric
        self.pruner = pruner
        self.last: float | None = None
        self.pruned_at: int | None = None

    def _value(self, result: EpochResult) -> float:
        values = epoch_values(result)
        if self.metric not in values:
            raise MetricUnknown(f"the sweep's metric '{self.metric}' is not logged by this "
                                f"run (it logs {', '.join(sorted(values))})",
                                "pass --metric with one of those (a train.metrics entry NAME "
                                "is logged as val_NAME)")
        return float(values[self.metric])

    def on_train_start(self, trainer: Trainer) -> None:
        for result in trainer.history:  # a resumed trial: the epochs its first process ran
            value = self._value(result)
            if math.isfinite(value):
                self.trial.report(value, result.epoch)
                self.last = value

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        value = self._value(result)
        self.last = value
        if not math.isfinite(value):
            return  # the NaN guard (val_loss) or the trial's value decides
        self.trial.report(value, result.epoch)
        if result.epoch < trainer.spec.epochs and self.trial.should_prune():
            self.pruned_at = result.epoch
            trainer.request_stop(f"pruned by the sweep's {self.pruner} pruner at epoch "
                                 f"{result.epoch} ({self.metric} {value:.5g})")

"""One epoch's record: what the trainer measured, the ``metrics.jsonl`` row it is written
as and read back from, and which epoch of a history is best.

A row's columns: ``COLUMNS``, then each objective term and ``train.metrics`` metric as
``train_NAME``/``val_NAME`` (``column``; a metric has a ``val_`` column only), then the
``trainer.log`` names as logged. This module owns that convention: the trainer builds the
record here (``EpochResult.measured``), readers decode it here (``terms_of``).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard, TypeVar

from aezoo.fileio import read_bounded

COLUMNS = ("epoch", "train_loss", "val_loss", "seconds", "images_per_s", "lr")
MAX_METRICS_BYTES = 256 * 2**20  # a million epochs' rows; a runaway file is not read
Split = Literal["train", "val"]


def number(v: Any) -> bool:
    """Whether ``v`` is a number of a row (a JSON ``true`` is not one)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def finite(v: Any) -> TypeGuard[float]:
    """Whether ``v`` is a finite number of a row (not a bool, not NaN or inf)."""
    return number(v) and math.isfinite(v)


def column(split: Split, name: str) -> str:
    """The column of term or metric ``name`` measured on ``split`` (``val_kl``)."""
    return f"{split}_{name}"


def terms_of(columns: Iterable[str]) -> list[str]:
    """The terms and metrics that ``columns`` hold a ``val_`` column of, beyond the loss,
    unprefixed and in first-seen order (``['recon', 'kl']``)."""
    return list(dict.fromkeys(c[4:] for c in columns if c.startswith("val_") and c != "val_loss"))


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured (one line of metrics.jsonl / metrics.csv)."""

    epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    images_per_s: float
    lr: float = 0.0
    # train_NAME, val_NAME of each objective term and metric, then trainer.log names.
    terms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def measured(cls, epoch: int, train: Mapping[str, float], val: Mapping[str, float],
                 logged: Mapping[str, float], seconds: float, images: float, lr: float
                 ) -> EpochResult:
        """The record of an epoch from each split's ``loss`` and named values (terms,
        metrics) and the ``trainer.log`` means."""
        terms = {**{column("train", n): v for n, v in train.items() if n != "loss"},
                 **{column("val", n): v for n, v in val.items() if n != "loss"}, **logged}
        return cls(epoch, train["loss"], val["loss"], seconds, images / max(seconds, 1e-9),
                   lr, terms)

    def value(self, name: str) -> float | None:
        """``train_loss``, ``val_loss`` or one of ``terms`` by its column name (None: absent)."""
        if name in ("train_loss", "val_loss"):
            return float(getattr(self, name))
        return self.terms.get(name)

    def row(self) -> dict[str, Any]:
        """The flat ``metrics.jsonl`` row: ``COLUMNS``, then each of ``terms``."""
        return {**{name: getattr(self, name) for name in COLUMNS}, **self.terms}

    def as_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict`` for this flat record, several times cheaper: every field
        is a number but ``terms`` (copied), and the state file converts the whole history
        every epoch."""
        return {**{name: getattr(self, name) for name in COLUMNS}, "terms": dict(self.terms)}


def parse_row(value: Any) -> dict[str, Any] | None:
    """A ``metrics.jsonl`` line's value as a row: its numbers (an edited ``"x"`` is
    dropped, not shown or summed), or None when it is no epoch's (no integer ``epoch``)."""
    epoch = value.get("epoch") if isinstance(value, dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    return {k: v for k, v in value.items() if number(v)}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a line that does not parse is skipped)."""
    try:
        lines = [ln for ln in read_bounded(path, MAX_METRICS_BYTES).splitlines() if ln.strip()]
    except FileNotFoundError:
        return []
    try:  # one parse for the whole file: a thousand runs' worth of lines stays quick
        parsed = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):  # a torn or edited line: parse line by line
        parsed = []
        for line in lines:
            with contextlib.suppress(ValueError, RecursionError):
                parsed.append(json.loads(line))
    return [row for row in map(parse_row, parsed) if row is not None]


Epoch = TypeVar("Epoch", EpochResult, Mapping[str, Any])


def best(history: Iterable[Epoch], monitor: str = "val_loss",
         mode: Literal["min", "max"] = "min") -> tuple[Epoch, float] | None:
    """The best epoch of ``history`` (records or rows) by its ``monitor`` value, lowest
    (``min``) or highest (``max``), with that value; the first of equals. Epochs without a
    finite value are passed over; None when none has one."""
    found: tuple[Epoch, float] | None = None
    for epoch in history:
        v = epoch.value(monitor) if isinstance(epoch, EpochResult) else epoch.get(monitor)
        if finite(v) and (found is None or score(v, mode) < score(found[1], mode)):
            found = (epoch, float(v))
    return found


def score(value: Any, mode: Literal["min", "max"] = "min") -> float:
    """``value`` as a score, lower better whatever the ``mode`` (a ``max`` value negated),
    NaN when it is no finite number: what :func:`best` and the checkpoints compare."""
    return (-1.0 if mode == "max" else 1.0) * value if finite(value) else math.nan

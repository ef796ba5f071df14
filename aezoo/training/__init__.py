"""Training: the loop (``loop``), its callback contract (``hooks``), precision, optimiser
and schedules (``optim``), stopping and the NaN/inf guard (``control``) and the training
state that makes resume exact (``state``).

The names below load on first use, so ``aezoo.training.hooks`` alone (all a callback
module needs) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aezoo.training.control import SIGNAL_CODES, Stop, TrainingError, TrainingInterrupted
    from aezoo.training.hooks import HOOKS, Callback, EpochResult, Outcome
    from aezoo.training.loop import Trainer
    from aezoo.training.optim import Schedule, make_optimizer
    from aezoo.training.precision import (
        autocast_dtype,
        flush_denormals,
        native_cpu_bf16,
        resolve_precision,
    )
    from aezoo.training.state import read_info, read_state

_HOME = {
    "SIGNAL_CODES": "control", "Stop": "control",
    "HOOKS": "hooks", "Callback": "hooks", "EpochResult": "hooks", "Outcome": "hooks",
    "Trainer": "loop", "TrainingError": "control", "TrainingInterrupted": "control",
    "Schedule": "optim", "make_optimizer": "optim",
    "autocast_dtype": "precision", "flush_denormals": "precision",
    "native_cpu_bf16": "precision", "resolve_precision": "precision",
    "read_info": "state", "read_state": "state",
}

__all__ = [
    "HOOKS", "SIGNAL_CODES", "Callback", "EpochResult", "Outcome", "Schedule", "Stop",
    "Trainer", "TrainingError", "TrainingInterrupted", "autocast_dtype", "flush_denormals",
    "make_optimizer", "native_cpu_bf16", "read_info", "read_state", "resolve_precision",
]
assert sorted(__all__) == sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})

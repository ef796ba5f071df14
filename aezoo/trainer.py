"""Deprecated: the trainer is the ``aezoo.training`` package now; import from there.

This module only re-exports the names it used to define, for code written against it.
"""

from aezoo.training import (
    HOOKS,
    SIGNAL_CODES,
    Trainer,
    TrainingError,
    TrainingInterrupted,
    autocast_dtype,
    flush_denormals,
    make_optimizer,
    native_cpu_bf16,
    resolve_precision,
)

__all__ = ["HOOKS", "SIGNAL_CODES", "Trainer", "TrainingError", "TrainingInterrupted",
           "autocast_dtype", "flush_denormals", "make_optimizer", "native_cpu_bf16",
           "resolve_precision"]

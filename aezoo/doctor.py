"""Checks that fail early with a clear message: before a training run (device, a model
that cannot serve the data's shape) and over the installed plugins (``aezoo plugins``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aezoo import registry
from aezoo.errors import AezooError, PluginError, summary

if TYPE_CHECKING:
    from aezoo.data.source import Progress
    from aezoo.specs import RunSpec, TrainSpec

__all__ = ["check_plugins", "plugin_report", "preflight", "training_warnings"]


def preflight(spec: RunSpec, progress: Progress | None = None) -> None:
    """Before training: an unknown device fails before anything loads; a model that cannot
    serve the data's (declared) shape fails now, not after a download; then what the
    dataset needs is downloaded and verified (reported to ``progress``)."""
    from aezoo.data import declared_shape
    from aezoo.data.info import prefetch
    from aezoo.device import resolve_device

    resolve_device(spec.train.device)
    if spec.train.init:  # an unknown name or an unreachable repo fails before the data loads
        from aezoo.pretrained import locate

        locate(spec.train.init)
    shape = declared_shape(spec.data)
    if shape is not None and tuple(spec.model.input_shape) != shape:
        from aezoo.config import resolve_model
        from aezoo.model import from_spec

        from_spec(resolve_model(spec.model.model_copy(update={"input_shape": shape})))
    from aezoo.distributed import from_env

    if from_env().is_main:  # under torchrun the other ranks wait for rank 0's copy (aezoo.run)
        prefetch(spec.data.name, progress)


def training_warnings(train: TrainSpec, train_images: int, steps_per_epoch: int) -> list[str]:
    """Settings that train, but not as the user likely meant: one line each.

    ``train_images`` is the training split this process sees, ``steps_per_epoch`` the
    optimiser steps it takes per epoch (both known once the data has loaded)."""
    out = []
    if train.batch_size > train_images:
        out.append(f"--batch-size {train.batch_size} is larger than the training split "
                   f"({train_images:,} images): each epoch is one step of {train_images:,} "
                   "images")
    total = steps_per_epoch * train.epochs
    if train.warmup > total:
        out.append(f"--warmup {train.warmup:,} steps is longer than the whole run "
                   f"({total:,} step{'s' * (total != 1)}: {train.epochs:,} epoch"
                   f"{'s' * (train.epochs != 1)} of {steps_per_epoch:,}): the learning rate "
                   "never reaches --lr")
    return out


def check_plugins() -> list[registry.Failure]:
    """Load every enabled entry of every group and resolve every variant's preset; returns
    every failure recorded so far (``registry.failures()``).

    Imports all plugin code (slow with many plugins): for ``aezoo plugins`` and tests.
    """
    from aezoo.config import build_run_spec

    for group in registry.groups():
        for entry in registry.entries(registry.kind_of(group)):
            try:
                registry.load_entry(entry)
            except PluginError:
                continue
            if entry.kind != "variant":
                continue
            try:
                build_run_spec(entry.qualified)
            except PluginError:
                pass  # a component's own failure is recorded on that component
            except Exception as exc:  # a params validator that crashes is still a plugin bug
                why = str(exc) if isinstance(exc, AezooError) else summary(exc)
                registry.record_failure(entry, f"its preset does not resolve: {why}", "spec")
    return registry.failures()


def plugin_report() -> dict[str, Any]:
    """Everything ``aezoo plugins`` shows, as plain data (what ``--json`` prints)."""
    failures = check_plugins()
    by_dist: dict[str, list[dict[str, str]]] = {}
    for f in failures:
        by_dist.setdefault(registry.canonical(f.entry.dist), []).append(
            {"group": f.entry.group, "name": f.entry.name, "value": f.entry.value,
             "reason": f.reason, "message": f.message})
    dists: list[dict[str, Any]] = [{"name": d.name, "version": d.version, "enabled": d.enabled,
                                    "provides": {g: list(n) for g, n in d.provides.items()},
                                    "failures": by_dist.get(registry.canonical(d.name), [])}
                                   for d in registry.distributions()]
    conflicts = [{"group": registry.group_of(kind), "name": name,
                  "providers": [e.qualified for e in es]}
                 for group in registry.groups()
                 for kind in [registry.kind_of(group)]
                 for name, es in registry.conflicts(kind).items()]
    raw = os.environ.get("AEZOO_PLUGINS")
    return {
        "distributions": dists,
        "conflicts": conflicts,
        "failures": sum(len(d["failures"]) for d in dists),
        "strict": registry.strict(),
        "only": None if raw is None else [d.strip() for d in raw.split(",") if d.strip()],
        "unknown_in_only": registry.unknown_allowed(),
    }

"""The optimiser and schedule a spec names (through the registry: aezoo's own and plugins'
alike), and aezoo's schedules as pure functions of the step.

A schedule holds no state of its own: the learning rate of step ``k`` (0-based) depends
only on ``k`` and the spec, so resuming needs nothing but the step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import nn

from aezoo import registry
from aezoo.config import part_params
from aezoo.errors import PluginError
from aezoo.protocols import builder
from aezoo.specs import TrainSpec

ONECYCLE_DIV = 25.0  # initial lr = lr / 25, as torch's OneCycleLR
ONECYCLE_FINAL_DIV = 1e4  # final lr = initial lr / 1e4
ONECYCLE_PCT = 0.3  # rising part when no warm-up is given


def make_optimizer(model: nn.Module, spec: TrainSpec, fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser ``spec.optimizer`` names (``aezoo.optimizers``: aezoo's or a plugin's).

    ``fused`` (CUDA): one kernel per step, and fp16's GradScaler then needs no host sync."""
    descriptor = registry.load("optimizer", spec.optimizer)
    params = part_params("optimizer", spec.optimizer, spec.optimizer_params,
                         "train.optimizer_params")
    optimizer = builder(descriptor)(params, model.parameters(), spec, fused)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise PluginError(f"optimizer '{spec.optimizer}' did not build a torch.optim.Optimizer",
                          "fix the plugin's builder")
    return optimizer


def make_schedule(spec: TrainSpec, steps_per_epoch: int) -> Callable[[int], float]:
    """The schedule ``spec.scheduler`` names (``aezoo.schedules``): ``lr(step)``."""
    descriptor = registry.load("schedule", spec.scheduler)
    params = part_params("schedule", spec.scheduler, spec.scheduler_params,
                         "train.scheduler_params")
    schedule = builder(descriptor)(params, spec, steps_per_epoch)
    if not callable(schedule):
        raise PluginError(f"schedule '{spec.scheduler}' did not build a callable",
                          "fix the plugin's builder")
    return cast(Callable[[int], float], schedule)


def _one_kernel(fused: bool) -> dict[str, bool]:
    """``fused`` (CUDA), else ``foreach``: the same arithmetic as torch's per-parameter
    loop, bit for bit, as one call per op over all parameters (half the optimiser's time
    on a CPU, where torch defaults to the loop; docs/benchmarks.md)."""
    return {"fused": True} if fused else {"foreach": True}


def build_adam(params: Any, parameters: Iterable[nn.Parameter], spec: TrainSpec,
               fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                            weight_decay=spec.weight_decay, **_one_kernel(fused))


def build_adamw(params: Any, parameters: Iterable[nn.Parameter], spec: TrainSpec,
                fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                             weight_decay=spec.weight_decay, **_one_kernel(fused))


def build_sgd(params: Any, parameters: Iterable[nn.Parameter], spec: TrainSpec,
              fused: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay)


def _schedule_builder(name: str) -> Callable[[Any, TrainSpec, int], Schedule]:
    """The builder of aezoo's schedule ``name`` (the descriptors' ``build_NAME``)."""
    def build(params: Any, spec: TrainSpec, steps_per_epoch: int) -> Schedule:
        return Schedule(spec, steps_per_epoch, name)
    return build


build_none, build_cosine, build_step, build_onecycle = (
    _schedule_builder(name) for name in ("none", "cosine", "step", "onecycle"))


class Schedule:
    """``schedule(k)`` is the learning rate for optimiser step ``k``.

    - ``none``: constant ``lr``;
    - ``cosine``: cosine decay from ``lr`` to ``min_lr`` over the run;
    - ``step``: ``lr * gamma ** (epoch // step_size)``;
    - ``onecycle``: cosine rise from ``lr/25`` to ``lr`` over ``warmup`` steps (default
      30% of the run), then cosine decay to ``lr/25e4`` (no momentum cycling).

    ``warmup`` (not onecycle) scales the first steps linearly: step k gets ``(k+1)/warmup``.
    """

    def __init__(self, spec: TrainSpec, steps_per_epoch: int, name: str | None = None) -> None:
        self.spec = spec
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.total = self.steps_per_epoch * spec.epochs
        # The descriptor's builder says which schedule; the spec's name is the fallback.
        self.name = name or spec.scheduler.rpartition(":")[2]
        if self.name not in ("none", "cosine", "step", "onecycle"):
            raise ValueError(f"aezoo has no schedule '{self.name}'")

    @property
    def constant(self) -> bool:
        return self.name == "none" and self.spec.warmup == 0

    def __call__(self, step: int) -> float:
        s = self.spec
        if self.name == "onecycle":
            return self._onecycle(step)
        warm = min(1.0, (step + 1) / s.warmup) if s.warmup else 1.0
        if self.name == "cosine":
            span = max(self.total - s.warmup, 1)
            progress = min(max(step - s.warmup, 0) / span, 1.0)
            return warm * (s.min_lr + (s.lr - s.min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))
        if self.name == "step":
            epoch = step // self.steps_per_epoch
            return warm * s.lr * s.gamma ** (epoch // s.step_size)
        return warm * s.lr

    def _onecycle(self, step: int) -> float:
        s = self.spec
        initial = s.lr / ONECYCLE_DIV
        final = initial / ONECYCLE_FINAL_DIV
        rise = s.warmup if s.warmup else max(int(ONECYCLE_PCT * self.total), 1)
        rise = min(rise, self.total - 1) if self.total > 1 else 1
        if step < rise:
            return _cos_between(initial, s.lr, step / rise)
        fall = max(self.total - 1 - rise, 1)
        return _cos_between(s.lr, final, min((step - rise) / fall, 1.0))


def _cos_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * fraction))

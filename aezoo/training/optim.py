"""The optimiser a spec names, and learning-rate schedules as pure functions of the step.

A schedule holds no state of its own: the learning rate of step ``k`` (0-based) depends
only on ``k`` and the spec, so resuming needs nothing but the step count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aezoo.specs import TrainSpec

ONECYCLE_DIV = 25.0  # initial lr = lr / 25, as torch's OneCycleLR
ONECYCLE_FINAL_DIV = 1e4  # final lr = initial lr / 1e4
ONECYCLE_PCT = 0.3  # rising part when no warm-up is given


def make_optimizer(model: nn.Module, spec: TrainSpec, fused: bool = False
                   ) -> torch.optim.Optimizer:
    """``fused`` (CUDA): one kernel per step, and fp16's GradScaler then needs no host sync."""
    params = model.parameters()
    extra = {"fused": True} if fused else {}
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                weight_decay=spec.weight_decay, **extra)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                 weight_decay=spec.weight_decay, **extra)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay)


class Schedule:
    """``schedule(k)`` is the learning rate for optimiser step ``k``.

    - ``none``: constant ``lr``;
    - ``cosine``: cosine decay from ``lr`` to ``min_lr`` over the run;
    - ``step``: ``lr * gamma ** (epoch // step_size)``;
    - ``onecycle``: cosine rise from ``lr/25`` to ``lr`` over ``warmup`` steps (default
      30% of the run), then cosine decay to ``lr/25e4`` (no momentum cycling).

    ``warmup`` (not onecycle) scales the first steps linearly: step k gets ``(k+1)/warmup``.
    """

    def __init__(self, spec: TrainSpec, steps_per_epoch: int) -> None:
        self.spec = spec
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.total = self.steps_per_epoch * spec.epochs

    @property
    def constant(self) -> bool:
        return self.spec.scheduler == "none" and self.spec.warmup == 0

    def __call__(self, step: int) -> float:
        s = self.spec
        if s.scheduler == "onecycle":
            return self._onecycle(step)
        warm = min(1.0, (step + 1) / s.warmup) if s.warmup else 1.0
        if s.scheduler == "cosine":
            span = max(self.total - s.warmup, 1)
            progress = min(max(step - s.warmup, 0) / span, 1.0)
            return warm * (s.min_lr + (s.lr - s.min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))
        if s.scheduler == "step":
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

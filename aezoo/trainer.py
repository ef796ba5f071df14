"""The generic training loop: any Autoencoder, any in-memory uint8 dataset.

The whole dataset lives on the training device as uint8; each batch is gathered with a
device-side permutation and scaled to [0, 1] there. Losses accumulate on the device and
are read once per epoch, so a step never waits for the host.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from aezoo.callbacks import Callback, EpochResult
from aezoo.data.base import ArrayDataset
from aezoo.device import resolve_device
from aezoo.errors import AezooError, ShapeError
from aezoo.model import Autoencoder
from aezoo.specs import TrainSpec


class TrainingError(AezooError):
    """Training cannot go on (e.g. the loss diverged)."""


def make_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = model.parameters()
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                weight_decay=spec.weight_decay)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                 weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay)


def use_channels_last(spec: TrainSpec, device: torch.device) -> bool:
    """NHWC is much faster for these small convolutions on CPU (see docs/benchmarks.md)."""
    if spec.channels_last is not None:
        return spec.channels_last
    return device.type == "cpu"


class Trainer:
    """Fits ``model`` on ``data`` as ``spec`` says; callbacks observe, the loop only trains."""

    def __init__(self, model: Autoencoder, data: ArrayDataset, spec: TrainSpec,
                 callbacks: Iterable[Callback] = ()) -> None:
        if data.shape != tuple(model.input_shape):
            raise ShapeError(
                f"dataset {data.name} has {'x'.join(map(str, data.shape))} images but the model "
                f"expects {'x'.join(map(str, model.input_shape))}",
                "set model.input_shape to the data's shape",
            )
        if len(data.train) == 0 or len(data.val) == 0:
            raise TrainingError(f"dataset {data.name} has an empty train or validation split",
                                "use a larger dataset or --limit")
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.memory_format = (torch.channels_last if use_channels_last(spec, self.device)
                              else torch.contiguous_format)
        self.model = model.to(self.device)
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.data = data
        self.train_images = self._to_device(data.train)
        self.val_images = self._to_device(data.val)
        self.optimizer = make_optimizer(self.model, spec)
        self.callbacks: Sequence[Callback] = list(callbacks)
        self.history: list[EpochResult] = []
        self.generator = torch.Generator(device=self.device).manual_seed(spec.seed)
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def batch(self, images: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Gather a uint8 batch and scale it to float32 in [0, 1] on the device."""
        return images[index].to(torch.float32, memory_format=self.memory_format).div_(255)

    def running_loss(self) -> float:
        """Mean training loss of the epoch so far. Syncs with the device: call sparingly."""
        return float(self._loss_sum.item()) / max(self._loss_count, 1)

    def fit(self) -> list[EpochResult]:
        for cb in self.callbacks:
            cb.on_train_start(self)
        for epoch in range(1, self.spec.epochs + 1):
            self.history.append(self._train_epoch(epoch))
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _train_epoch(self, epoch: int) -> EpochResult:
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        model, opt, bs = self.model, self.optimizer, self.spec.batch_size
        n = len(self.train_images)
        model.train()
        start = time.perf_counter()
        perm = torch.randperm(n, device=self.device, generator=self.generator)
        self._loss_sum.zero_()
        self._loss_count = 0
        for step, s in enumerate(range(0, n, bs), start=1):
            xb = self.batch(self.train_images, perm[s:s + bs])
            opt.zero_grad(set_to_none=True)
            loss = model.loss(xb)
            loss.backward()
            opt.step()
            self._loss_sum += loss.detach() * len(xb)
            self._loss_count += len(xb)
            for cb in self.callbacks:
                cb.on_step_end(self, step, self._loss_count)
        train_loss = self.running_loss()  # the epoch's one sync
        seconds = time.perf_counter() - start
        val_loss = self.evaluate()
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingError(
                f"the loss became {train_loss if not math.isfinite(train_loss) else val_loss} "
                f"in epoch {epoch}",
                "lower the learning rate (--lr) or check the data for NaN values",
            )
        result = EpochResult(epoch, train_loss, val_loss, seconds, n / seconds)
        for cb in self.callbacks:
            cb.on_epoch_end(self, result)
        return result

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor | None = None) -> float:
        """Mean loss over ``images`` (default: the validation split)."""
        images = self.val_images if images is None else images
        self.model.eval()
        total = torch.zeros((), device=self.device)
        bs = max(self.spec.batch_size, 1024)
        for s in range(0, len(images), bs):
            xb = self.batch(images, slice(s, s + bs))
            total += self.model.loss(xb) * len(xb)
        self.model.train()
        return float(total.item()) / len(images)

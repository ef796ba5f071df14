"""What one optimiser step computes: the objective as one module call (what DDP and
torch.compile wrap), built for a model and spec, and its forward and backward over the
step's batches."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
from torch import nn

from aezoo import distributed
from aezoo.errors import PluginError, SpecError
from aezoo.model import Autoencoder, probe
from aezoo.objective import RECON, total
from aezoo.specs import TrainSpec
from aezoo.training.precision import autocast

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class LossStep(nn.Module):
    """The objective as one forward, so DDP and torch.compile see one module call.

    Returns the total (0-d) when the objective has one term, else ``[total, term, ...]``
    in ``names`` order: one device tensor, so accumulating the terms costs no sync."""

    def __init__(self, model: Autoencoder, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.model.terms(x, target)
        if not self.names:
            return total(terms).float()
        if len(terms) != len(self.names) or any(n not in terms for n in self.names):
            raise PluginError(f"the objective's terms changed from {self.names} to "
                              f"{list(terms)}", "return the same named terms every step")
        return torch.stack([total(terms).float(), *(terms[n].float() for n in self.names)])


def build(model: Autoencoder, spec: TrainSpec, dist: distributed.Dist,
          device: torch.device) -> tuple[nn.Module, list[str]]:
    """The step module of ``model``'s objective, under DDP (a distributed run) and
    torch.compile (``--compile``), and the names of the terms it reports besides the total
    ([] when the total is the only term)."""
    if model.term_names == [RECON] and (model.spec.regularizers or getattr(
            model.loss_fn, "sees_forward", False)):  # built without the shape probe
        probe(model)
    names = list(model.term_names)
    unknown = [n for n in spec.anneal if n not in names]
    if unknown:
        raise SpecError(f"train.anneal names the term '{unknown[0]}', which this model's "
                        f"objective does not have", f"anneal one of its terms: "
                        f"{', '.join(names)}", key="train.anneal")
    term_names = names if len(names) > 1 else []
    module: nn.Module = LossStep(model, term_names)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=ids)
    if spec.compile:  # torch >= 2.1 (pyproject.toml) always has it
        module = torch.compile(module)  # type: ignore[assignment]
    return module, term_names


def accumulate(trainer: Trainer, model: nn.Module, index: torch.Tensor, bs: int,
               scaled: bool, device: torch.device, amp_dtype: torch.dtype | None
               ) -> torch.Tensor:
    """Forward and backward over the step's batches (one, unless ``accumulate``); the
    summed total (or ``[total, terms...]``) times images. Each batch's loss is weighted
    by its share of the step's images, so k batches of n give the gradient of one batch
    of k*n."""
    chunks = list(index.split(bs))
    summed: torch.Tensor | None = None
    for j, chunk in enumerate(chunks):
        xb = trainer.batch(trainer.train_images, chunk)
        x_in = trainer.corrupt(xb, trainer.noise) if trainer.corrupt is not None else xb
        last = j == len(chunks) - 1
        sync = (model.no_sync() if trainer.dist.enabled and not last  # type: ignore[operator]
                else contextlib.nullcontext())
        with sync:
            with autocast(device, amp_dtype):
                values = model(x_in, xb)
            loss = values if values.dim() == 0 else values[0]
            if len(chunks) > 1:
                loss = loss * (len(chunk) / len(index))
            (trainer.scaler.scale(loss) if scaled else loss).backward()
        part = values.detach() * len(chunk)  # a sum (its finiteness is the mean's)
        summed = part if summed is None else summed + part
    assert summed is not None
    return summed

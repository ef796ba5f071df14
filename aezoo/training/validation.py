"""Validation and the epoch's running sums (loss, images, trainer.log): what the trainer
measures in an epoch and at its end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from aezoo import distributed
from aezoo.errors import PluginError, summary
from aezoo.objective import metric_values, total
from aezoo.protocols import Forward
from aezoo.tensors import to_uint8

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

VAL_NOISE_SEED = 0x5EED  # validation corruption: one fixed draw, the same every epoch
HEAD = 16  # reconstructions of the first validation images kept for the epoch's pictures


@torch.inference_mode()
def evaluate_terms(trainer: Trainer, images: torch.Tensor | None = None
                   ) -> tuple[dict[str, float], torch.Tensor | None]:
    """Mean total (``loss``) and terms over ``images`` (default: the validation split,
    across all ranks), in full precision, so val_loss is comparable across
    --precision. A corrupting run corrupts them too (``corrupt_val``), with one fixed
    draw, so epochs are compared on the same noisy images. With them, the uint8
    reconstructions of the split's first images (``trainer.val_head``), when made."""
    shared = images is None
    images = trainer.val_images if images is None else images
    corrupt = trainer.corrupt if trainer.spec.corrupt_val else None
    noise = torch.Generator(device=trainer.device).manual_seed(
        (trainer.spec.seed + VAL_NOISE_SEED) % 2**64)
    trainer.model.eval()
    model, metrics = trainer.model, trainer.metrics
    names = [*trainer.term_names, *(f"val_{n}" for n, _ in metrics)]
    sums = torch.zeros(2 + len(names), dtype=trainer.acc_dtype, device=trainer.device)
    head = None
    bs = max(trainer.spec.batch_size, 1024)
    for s in range(0, len(images), bs):
        xb = trainer.batch(images, slice(s, s + bs))
        fwd = model.forward_pass(corrupt(xb, noise) if corrupt is not None else xb, xb)
        if shared and s == 0 and corrupt is None:  # the pictures need no forward of their own
            head = to_uint8(torch.sigmoid(fwd.logits[:HEAD].float()))
        terms = model.objective(fwd, model.loss_fn)
        values = [total(terms), *(terms[n] for n in trainer.term_names)]
        if metrics:
            recon = torch.sigmoid(fwd.logits.float())
            values += [_metric(name, metric, fwd, recon) for name, metric in metrics]
        sums[:-1] += torch.stack([v.to(trainer.acc_dtype) for v in values]) * len(xb)
        sums[-1] += len(xb)
    model.train()
    if shared:
        distributed.all_reduce(sums)
    count = max(float(sums[-1]), 1.0)
    means = [float(v) / count for v in sums[:-1].tolist()]
    return {"loss": means[0], **dict(zip(names, means[1:], strict=True))}, head


def _metric(name: str, metric: Any, fwd: Forward, recon: torch.Tensor) -> torch.Tensor:
    """A ``train.metrics`` metric's batch mean; one that raises is an error naming it."""
    try:
        return metric_values(metric, fwd, recon).float().mean()
    except Exception as exc:
        raise PluginError(f"metric '{name}' (train.metrics) failed: {summary(exc)}",
                          "drop it from train.metrics, or report it to its plugin's authors"
                          ) from exc


def reconstructions(trainer: Trainer, n: int) -> torch.Tensor:
    """uint8 reconstructions of the first ``n`` validation images by the model as it is
    now (in eval mode; its average, with EMA): this step's validation's when it made them."""
    from aezoo.viz import reconstruct

    if trainer.val_head is not None:
        step, head = trainer.val_head
        if step == trainer.global_step and n <= len(head):
            return head[:n]
    with trainer.averaged():
        return reconstruct(trainer.model, trainer.val_images[:n], trainer.memory_format)


class EpochSums:
    """The epoch's running sums, on the device until its end: the loss (``[total,
    terms...]`` times images), images, seconds, and ``trainer.log``'s values per name
    (the tensors' sum, the numbers' sum, calls), added in call order, so an interrupted
    and resumed epoch reduces to the very same means."""

    def __init__(self, device: torch.device, terms: int, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype  # dtype: the cross-rank sums'
        self.loss = torch.zeros(1 + terms, device=device)
        self.images, self.seconds = 0, 0.0
        self.logged: dict[str, list[Any]] = {}

    def start(self) -> None:
        """A fresh epoch's (``trainer.log`` starts over when its means are taken)."""
        self.loss.zero_()
        self.images, self.seconds = 0, 0.0

    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Add ``trainer.log``'s ``value`` to ``name``'s sums (no sync)."""
        sums = self.logged.setdefault(name, [torch.zeros((), device=self.device), 0.0, 0])
        if isinstance(value, torch.Tensor):
            sums[0] = sums[0] + value.detach().float().reshape(())
        else:
            sums[1] += float(value)
        sums[2] += 1

    def reduce(self, dist: distributed.Dist) -> tuple[list[float], float, dict[str, float]]:
        """(the loss means ``[total, terms...]``, images, ``trainer.log``'s means), all
        across ranks: the epoch's one sync, and the logged values' (which start over)."""
        totals = torch.cat([self.loss.to(self.dtype), torch.tensor(
            [float(self.images)], dtype=self.dtype, device=self.device)])
        summed: list[float] = distributed.all_reduce(totals).tolist()
        images = summed[-1]
        logged, self.logged = self._logged_means(dist), {}
        return [v / max(images, 1.0) for v in summed[:-1]], images, logged

    def _logged_means(self, dist: distributed.Dist) -> dict[str, float]:
        """``trainer.log``'s means across ranks. Under DDP every rank takes part (callbacks
        log on rank 0 only, unless ``all_ranks``): the names are rank 0's, a rank that
        logged none of one contributes nothing to its mean."""
        names, device = sorted(self.logged), self.device
        if dist.enabled:
            text = distributed.broadcast_text("\n".join(names), dist, device)
            names = [n for n in text.split("\n") if n]
        if not names:
            return {}
        rows = []
        for n in names:
            device_sum, host_sum, count = self.logged.get(
                n, (torch.zeros((), device=device), 0.0, 0))
            rows.append(torch.stack([device_sum.double() + host_sum, torch.tensor(
                float(count), dtype=torch.float64, device=device)]))
        reduced = distributed.all_reduce(torch.stack(rows)).tolist()
        return {n: s / c for n, (s, c) in zip(names, reduced, strict=True) if c}

    def state_dict(self, partial: bool) -> dict[str, Any]:
        """The sums; images and seconds only for a ``partial`` epoch (a complete one's
        next epoch starts them over)."""
        return {"loss": self.loss, "images": self.images if partial else 0,
                "seconds": self.seconds if partial else 0.0,
                "logged": {n: tuple(sums) for n, sums in sorted(self.logged.items())}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss.copy_(state["loss"])  # a scalar (saved before terms) broadcasts
        self.images, self.seconds = int(state["images"]), float(state["seconds"])
        self.logged = {n: [device_sum.to(self.device), float(host_sum), int(count)]
                       for n, (device_sum, host_sum, count) in state["logged"].items()}

"""Validation and the epoch's logged values: what the trainer measures at an epoch's end."""

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
def evaluate_terms(trainer: Trainer, images: torch.Tensor | None = None) -> dict[str, float]:
    """Mean total (``loss``) and terms over ``images`` (default: the validation split,
    across all ranks), in full precision, so val_loss is comparable across
    --precision. A corrupting run corrupts them too (``corrupt_val``), with one fixed
    draw, so epochs are compared on the same noisy images."""
    shared = images is None
    images = trainer.val_images if images is None else images
    corrupt = trainer.corrupt if trainer.spec.corrupt_val else None
    noise = torch.Generator(device=trainer.device).manual_seed(
        (trainer.spec.seed + VAL_NOISE_SEED) % 2**64)
    trainer.model.eval()
    model, metrics = trainer.model, trainer.metrics
    names = [*trainer.term_names, *(f"val_{n}" for n, _ in metrics)]
    sums = torch.zeros(2 + len(names), dtype=trainer._acc_dtype, device=trainer.device)
    bs = max(trainer.spec.batch_size, 1024)
    for s in range(0, len(images), bs):
        xb = trainer.batch(images, slice(s, s + bs))
        fwd = model.forward_pass(corrupt(xb, noise) if corrupt is not None else xb, xb)
        if shared and s == 0 and corrupt is None:  # the pictures need no forward of their own
            trainer._val_head = (trainer.global_step, to_uint8(torch.sigmoid(
                fwd.logits[:HEAD].float())))
        terms = model.objective(fwd, model.loss_fn)
        values = [total(terms), *(terms[n] for n in trainer.term_names)]
        if metrics:
            recon = torch.sigmoid(fwd.logits.float())
            values += [_metric(name, metric, fwd, recon) for name, metric in metrics]
        sums[:-1] += torch.stack([v.to(trainer._acc_dtype) for v in values]) * len(xb)
        sums[-1] += len(xb)
    model.train()
    if shared:
        distributed.all_reduce(sums)
    count = max(float(sums[-1]), 1.0)
    means = [float(v) / count for v in sums[:-1].tolist()]
    return {"loss": means[0], **dict(zip(names, means[1:], strict=True))}


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

    if trainer._val_head is not None:
        step, head = trainer._val_head
        if step == trainer.global_step and n <= len(head):
            return head[:n]
    with trainer.averaged():
        return reconstruct(trainer.model, trainer.val_images[:n], trainer.memory_format)


def logged_sums(trainer: Trainer) -> dict[str, tuple[torch.Tensor, float, int]]:
    """The epoch's ``trainer.log`` so far, per name: (the tensors' sum on the device, the
    numbers' sum, how many calls). Summed in call order from what a resumed state carried,
    so an interrupted and resumed epoch reduces to the very same mean."""
    carried, logged = trainer._logged_carry, trainer._logged
    out = {}
    for n in sorted(set(carried) | set(logged)):
        device_sum, host_sum, count = carried.get(
            n, (torch.zeros((), device=trainer.device), 0.0, 0))
        values = logged.get(n, [])
        device_sum = sum((v for v in values if isinstance(v, torch.Tensor)), device_sum)
        host_sum = sum((v for v in values if not isinstance(v, torch.Tensor)), host_sum)
        out[n] = (device_sum, host_sum, count + len(values))
    return out


def reduce_logged(trainer: Trainer) -> dict[str, float]:
    """The epoch's ``trainer.log`` means, across ranks. Under DDP every rank takes part
    (callbacks log on rank 0 only, unless ``all_ranks``): the names are rank 0's, a rank
    that logged none of one contributes nothing to its mean."""
    logged = logged_sums(trainer)
    trainer._logged, trainer._logged_carry = {}, {}
    names = sorted(logged)
    if trainer.dist.enabled:
        text = distributed.broadcast_text("\n".join(names), trainer.dist, trainer.device)
        names = [n for n in text.split("\n") if n]
    if not names:
        return {}
    rows = []
    for n in names:
        device_sum, host_sum, count = logged.get(
            n, (torch.zeros((), device=trainer.device), 0.0, 0))
        rows.append(torch.stack([device_sum.double() + host_sum,
                                 torch.tensor(float(count), dtype=torch.float64,
                                              device=trainer.device)]))
    reduced = distributed.all_reduce(torch.stack(rows)).tolist()
    return {n: s / c for n, (s, c) in zip(names, reduced, strict=True) if c}

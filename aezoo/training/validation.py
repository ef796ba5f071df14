"""Validation and the epoch's logged values: what the trainer measures at an epoch's end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from aezoo import distributed
from aezoo.objective import total

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

VAL_NOISE_SEED = 0x5EED  # validation corruption: one fixed draw, the same every epoch


@torch.no_grad()
def evaluate_terms(trainer: Trainer, images: torch.Tensor | None = None) -> dict[str, float]:
    """Mean total (``loss``) and terms over ``images`` (default: the validation split,
    across all ranks), in full precision, so val_loss is comparable across
    --precision. A corrupting run corrupts them too (``corrupt_val``), with one fixed
    draw, so epochs are compared on the same noisy images."""
    shared = images is None
    images = trainer.val_images if images is None else images
    corrupt = trainer.corrupt if trainer.spec.corrupt_val else None
    noise = torch.Generator(device=trainer.device).manual_seed(trainer.spec.seed + VAL_NOISE_SEED)
    trainer.model.eval()
    model, metrics = trainer.model, trainer.metrics
    names = [*trainer.term_names, *(f"val_{n}" for n, _ in metrics)]
    sums = torch.zeros(2 + len(names), dtype=trainer._acc_dtype, device=trainer.device)
    bs = max(trainer.spec.batch_size, 1024)
    for s in range(0, len(images), bs):
        xb = trainer.batch(images, slice(s, s + bs))
        fwd = model.forward_pass(corrupt(xb, noise) if corrupt is not None else xb, xb)
        terms = model.objective(fwd, model.loss_fn)
        values = [total(terms), *(terms[n] for n in trainer.term_names)]
        if metrics:
            recon = torch.sigmoid(fwd.logits.float())
            values += [compute(recon, xb).float().mean() for _, compute in metrics]
        sums[:-1] += torch.stack([v.to(trainer._acc_dtype) for v in values]) * len(xb)
        sums[-1] += len(xb)
    model.train()
    if shared:
        distributed.all_reduce(sums)
    count = max(float(sums[-1]), 1.0)
    means = [float(v) / count for v in sums[:-1].tolist()]
    return {"loss": means[0], **dict(zip(names, means[1:], strict=True))}


def reduce_logged(trainer: Trainer) -> dict[str, float]:
    """The epoch's ``trainer.log`` means, across ranks (names in one order on all)."""
    if not trainer._logged:
        return {}
    names = sorted(trainer._logged)
    stats = torch.stack([torch.stack([torch.stack(trainer._logged[n]).sum(),
                                      torch.tensor(float(len(trainer._logged[n])),
                                                   device=trainer.device)]) for n in names])
    trainer._logged = {}
    reduced = distributed.all_reduce(stats.double()).tolist()
    return {n: s / max(c, 1.0) for n, (s, c) in zip(names, reduced, strict=True)}

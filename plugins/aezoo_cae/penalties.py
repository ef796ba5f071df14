"""The torch modules behind the regularisers of ``aezoo_cae.family``.

Each is ``module(forward) -> scalar`` (a :class:`aezoo.protocols.Forward`), computed in
float32 so autocast cannot overflow it; the objective multiplies it by its weight.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aezoo.protocols import LOGVAR, MEAN, Forward


class ActivityL1(nn.Module):
    """Mean |latent| over every element of the batch."""

    def forward(self, fwd: Forward) -> torch.Tensor:
        return fwd.latent.float().abs().mean()


class GaussianKL(nn.Module):
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over latent dims, batch-averaged."""

    def forward(self, fwd: Forward) -> torch.Tensor:
        mean, logvar = fwd.extras[MEAN].float(), fwd.extras[LOGVAR].float()
        per_dim = 0.5 * (logvar.exp() + mean.square() - 1.0 - logvar)
        return per_dim.flatten(1).sum(dim=1).mean()


class Decorrelation(nn.Module):
    """Mean squared off-diagonal correlation of the flattened code across the batch."""

    eps = 1e-6

    def forward(self, fwd: Forward) -> torch.Tensor:
        z = fwd.latent.float().flatten(1)
        n, d = z.shape
        if n < 2 or d < 2:
            return z.sum() * 0.0  # no correlation to measure (keeps the graph connected)
        zc = z - z.mean(dim=0, keepdim=True)
        cov = zc.T @ zc / (n - 1)
        std = cov.diagonal().clamp_min(0).sqrt()
        corr = cov / (std[:, None] * std[None, :] + self.eps)
        off = corr - torch.diag_embed(corr.diagonal())
        return off.square().sum() / (d * (d - 1))


# --- builders (referenced by family.py) ---


def l1(params: Any) -> ActivityL1:
    return ActivityL1()


def kl(params: Any) -> GaussianKL:
    return GaussianKL()


def orthogonal(params: Any) -> Decorrelation:
    return Decorrelation()

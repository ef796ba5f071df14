"""The input corruptions of ``aezoo_cae.family``: ``t(x, generator) -> x'``.

``x`` is a float batch in [0, 1]; every random draw comes from ``generator`` (the
trainer's checkpointed noise generator, on ``x``'s device), never from torch's global
RNG, so a resumed run draws the same noise. ``x`` itself is never modified: it is the
clean target.
"""

from __future__ import annotations

from typing import Any

import torch


class GaussianNoise:
    def __init__(self, sigma: float, clip: bool) -> None:
        self.sigma, self.clip = sigma, clip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out = x + self.sigma * noise
        return out.clamp(0.0, 1.0) if self.clip else out


class SaltPepper:
    def __init__(self, amount: float) -> None:
        self.amount = amount

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # One uniform per pixel (shared by its channels): below amount/2 pepper, up to
        # amount salt.
        u = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device)
        pepper, salt = u < self.amount / 2, (u >= self.amount / 2) & (u < self.amount)
        out = x.masked_fill(pepper, 0.0)
        return out.masked_fill(salt, 1.0)


class Mask:
    def __init__(self, fraction: float, patch: int) -> None:
        self.fraction, self.patch = fraction, patch

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.patch
        cells = (n, 1, -(-h // p), -(-w // p))  # a grid of patch x patch cells, ceil
        drop = torch.rand(cells, generator=generator, device=x.device) < self.fraction
        if p > 1:
            drop = drop.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)[:, :, :h, :w]
        return x.masked_fill(drop, 0.0)


# --- builders (referenced by family.py) ---


def gaussian(params: Any) -> GaussianNoise:
    return GaussianNoise(params.sigma, params.clip)


def salt_pepper(params: Any) -> SaltPepper:
    return SaltPepper(params.amount)


def mask(params: Any) -> Mask:
    return Mask(params.fraction, params.patch)

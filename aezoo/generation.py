"""Decoding what was never encoded: draws from a variational model's prior, and lines
between two images' codes. What ``aezoo sample`` and ``aezoo interpolate`` compute.
"""

from __future__ import annotations

from typing import Any

import torch

from aezoo.errors import UsageError
from aezoo.tensors import evaluating, to_uint8, to_unit

MAX_SAMPLES = 10_000


DECODE_BATCH = 256  # codes decoded at once: 10,000 draws once took 2 GB in one batch


def _decode(model: Any, z: torch.Tensor) -> torch.Tensor:
    with evaluating(model):
        return torch.cat([to_uint8(model.decode(part)) for part in z.split(DECODE_BATCH)])


def sample(model: Any, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` decoded draws from the prior N(0, I) of a stochastic model's latent, as uint8
    ``(n, C, H, W)`` on the model's device; the same ``seed`` gives the same images."""
    if not getattr(model, "stochastic", False):
        raise UsageError(f"{model.spec.variant or model.spec.encoder.name} is not a "
                         "variational model: its codes have no prior to sample from",
                         "sample a model with a stochastic encoder (e.g. cae-vae), or use "
                         "`aezoo interpolate` between real images")
    if not 1 <= n <= MAX_SAMPLES:
        raise UsageError(f"--n must be between 1 and {MAX_SAMPLES:,} (got {n})",
                         "pass at least 1" if n < 1 else "pass a smaller --n")
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn((n, *model.latent_shape), generator=generator).to(device)
    return _decode(model, z)


def interpolate(model: Any, first: torch.Tensor, last: torch.Tensor, steps: int = 10
                ) -> torch.Tensor:
    """Decoded codes on the straight line from ``first``'s code to ``last``'s (uint8
    images ``(C, H, W)``; a stochastic model's mean), ``steps`` images including both ends."""
    if not 2 <= steps <= 1000:
        raise UsageError(f"--steps must be between 2 and 1000 (got {steps})",
                         "pass --steps 10, for example")
    with evaluating(model):
        codes = model.encode(to_unit(torch.stack([first, last])))
    weights = torch.linspace(0, 1, steps, device=codes.device).view(-1, 1, 1, 1)
    line = codes[0:1] * (1 - weights) + codes[1:2] * weights
    return _decode(model, line)

"""What a model makes of uint8 images: their latents (``encode_split``, for ``aezoo
encode``) and the reconstructions of corrupted copies (``corrupted_reconstructions``, for
``aezoo reconstruct --corrupt``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aezoo.errors import UsageError
from aezoo.specs import ComponentSpec
from aezoo.tensors import evaluating, to_uint8, to_unit, unit_batches


def encode_split(model: Any, images: torch.Tensor, batch_size: int = 1024,
                 memory_format: torch.memory_format | None = None,
                 flatten: bool = False, output: str = "mean", seed: int = 0) -> np.ndarray:
    """The float32 latents of uint8 ``images``: ``(N, C, H, W)``, or ``(N, C*H*W)`` with
    ``flatten``. ``output``: the code (``mean``: a stochastic encoder's mean), its
    ``logvar``, a ``sample`` drawn with the reparameterisation trick (from ``seed``), or
    any other tensor the encoder returns by name (a VQ encoder's codebook ``indices``),
    in its own dtype."""
    from aezoo.model import sample_latent
    from aezoo.protocols import LOGVAR

    if output in ("logvar", "sample") and not getattr(model, "stochastic", False):
        raise UsageError(f"--output {output} needs a stochastic encoder (a VAE's); "
                         f"{model.spec.encoder.name} returns a plain code",
                         "use --output mean (the default)")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    parts = []
    with evaluating(model):
        for x in unit_batches(images, batch_size, memory_format):
            code, extras = model.encode_parts(x)
            if output == "logvar":
                code = extras[LOGVAR]
            elif output == "sample":
                noise = torch.randn(code.shape, generator=generator).to(code.device)
                code = sample_latent(extras, noise)
            elif output != "mean":
                code = _extra(model, extras, output)
            parts.append((code.float() if code.is_floating_point() else code).cpu())
    latents: np.ndarray = torch.cat(parts).contiguous().numpy()
    return latents.reshape(len(latents), -1) if flatten else latents


def _extra(model: Any, extras: dict[str, Any], name: str) -> torch.Tensor:
    """The encoder's extra ``name`` (one row per image), or a one-line UsageError."""
    value = extras.get(name)
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        named = (k for k, v in extras.items() if isinstance(v, torch.Tensor) and v.dim() > 0)
        sample = ["sample"] if getattr(model, "stochastic", False) else []
        known = ", ".join(dict.fromkeys(["mean", *sample, *named]))
        raise UsageError(f"unknown --output '{name[:60]}': {model.spec.encoder.name} returns "
                         f"no tensor of that name", f"use one of: {known}")
    return value


def corrupted_reconstructions(model: Any, images: torch.Tensor, spec: ComponentSpec,
                              memory_format: torch.memory_format | None = None, seed: int = 0
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted inputs, their reconstructions) of uint8 ``images``, both uint8."""
    from aezoo.objective import build_transform

    transform = build_transform(spec)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    with evaluating(model):
        noisy = transform(to_unit(images, memory_format), generator)
        recon = model(noisy)
    return to_uint8(noisy), to_uint8(recon)


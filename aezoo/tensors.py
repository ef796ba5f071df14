"""Image batches: uint8 ``(N, C, H, W)`` on the device, scaled to [0, 1] one batch at a time.

Datasets are held as uint8 and scaled per batch, where the batch is (4x less memory).
Every loop over images in batches (training, validation, metrics, pictures, encoding)
uses these helpers, so the conversion and the memory layout are decided in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def to_unit(images: torch.Tensor, memory_format: torch.memory_format | None = None
            ) -> torch.Tensor:
    """uint8 images (N, C, H, W) as float32 in [0, 1], in ``memory_format``; on their device."""
    fmt = memory_format if memory_format is not None else torch.contiguous_format
    return images.to(torch.float32, memory_format=fmt).div_(255)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] as uint8 images (rounded, clamped)."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def unit_batches(images: torch.Tensor, batch_size: int,
                 memory_format: torch.memory_format | None = None) -> Iterator[torch.Tensor]:
    """``images`` (uint8) in consecutive batches of at most ``batch_size``, in [0, 1]."""
    for start in range(0, len(images), batch_size):
        yield to_unit(images[start:start + batch_size], memory_format)


def preferred_memory_format(device: torch.device, channels_last: bool | None = None
                            ) -> torch.memory_format:
    """NHWC on CPU, where these small convolutions run much faster (docs/benchmarks.md);
    NCHW elsewhere; ``channels_last`` True/False overrides."""
    use = device.type == "cpu" if channels_last is None else channels_last
    return torch.channels_last if use else torch.contiguous_format


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode and without gradients inside; back in its own mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)

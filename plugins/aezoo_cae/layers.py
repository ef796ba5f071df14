"""The torch modules behind the first-party components.

ReLUs run in place: every one follows a convolution whose output nothing else reads,
and skipping the copy is worth 7-11% of a CPU training step (benchmarks/).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aezoo.errors import ShapeError
from aezoo.protocols import Shape


def _halve(size: int) -> int:
    return math.ceil(size / 2)


class StageEncoder(nn.Module):
    """``pool``: Conv+ReLU+MaxPool('same'); ``strided``: stride-2 Conv+ReLU. Both ceil-halve."""

    def __init__(self, kind: str, input_shape: Shape, channels: Sequence[int], kernel: int):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            if min(h, w) < 2:
                raise ShapeError(
                    f"encoder '{kind}' with {len(channels)} stages cannot take "
                    f"{input_shape[1]}x{input_shape[2]} inputs (too small)",
                    "use larger images or fewer stages (model.encoder.params.channels)",
                )
            if kind == "pool":
                # Keras 'same' pooling pads at the end: 7 -> 4 is ceil_mode.
                layers += [nn.Conv2d(c, out, kernel, padding=kernel // 2), nn.ReLU(inplace=True),
                           nn.MaxPool2d(2, ceil_mode=True)]
            else:
                layers += [nn.Conv2d(c, out, kernel, stride=2, padding=kernel // 2),
                           nn.ReLU(inplace=True)]
            c, h, w = out, _halve(h), _halve(w)
        self.net = nn.Sequential(*layers)
        self.input_shape: Shape = tuple(input_shape)  # type: ignore[assignment]
        self.latent_shape: Shape = (c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _valid_stages(latent: int, target: int, stages: int, trim: int) -> list[bool] | None:
    """Which upsampling stages use a 'valid' conv so ``latent`` grows to exactly ``target``.

    A valid conv at stage i trims ``trim`` pixels, which the remaining ``stages - i``
    doublings turn into ``trim * 2**(stages - i)``. None when no choice works.
    """
    excess = latent * 2**stages - target
    choice = [False] * stages
    for i in range(stages):
        amount = trim * 2 ** (stages - i)
        if amount and excess >= amount:
            choice[i], excess = True, excess - amount
    if excess != 0:
        return None
    size = latent
    for valid in choice:  # a valid conv must still leave at least one pixel
        if valid and size <= trim:
            return None
        size = (size - trim if valid else size) * 2
    return choice


class UpsampleDecoder(nn.Module):
    """Conv+ReLU+Upsample(x2, nearest) stages, then a Conv to the image channels (logits)."""

    def __init__(self, latent_shape: Shape, output_shape: Shape, channels: Sequence[int],
                 kernel: int):
        super().__init__()
        c, lh, lw = latent_shape
        n = len(channels)
        valid_h = _valid_stages(lh, output_shape[1], n, kernel - 1)
        valid_w = _valid_stages(lw, output_shape[2], n, kernel - 1)
        if valid_h is None or valid_w is None:
            raise ShapeError(
                f"decoder 'upsample' with {n} stages cannot turn a {lh}x{lw} latent into "
                f"{output_shape[1]}x{output_shape[2]} images",
                "use images whose height and width are multiples of 4 (with 3 stages), or "
                "the 'convtranspose' decoder",
            )
        layers: list[nn.Module] = []
        pad = kernel // 2
        for out, vh, vw in zip(channels, valid_h, valid_w, strict=True):
            layers += [nn.Conv2d(c, out, kernel, padding=(0 if vh else pad, 0 if vw else pad)),
                       nn.ReLU(inplace=True), nn.Upsample(scale_factor=2, mode="nearest")]
            c = out
        layers.append(nn.Conv2d(c, output_shape[0], kernel, padding=pad))
        self.net = nn.Sequential(*layers)
        self.latent_shape: Shape = tuple(latent_shape)  # type: ignore[assignment]
        self.output_shape: Shape = tuple(output_shape)  # type: ignore[assignment]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _output_paddings(latent: int, target: int, stages: int) -> list[int] | None:
    """Per-stage output_padding so stride-2 transposed convs grow ``latent`` to ``target``."""
    sizes = [target]
    for _ in range(stages):
        sizes.append(_halve(sizes[-1]))
    sizes.reverse()  # sizes[0] must be the latent size, sizes[i+1] = 2*sizes[i] - 1 + pad
    if sizes[0] != latent:
        return None
    return [sizes[i + 1] - (2 * sizes[i] - 1) for i in range(stages)]


def stride2_paddings(decoder: str, latent_shape: Shape, output_shape: Shape, stages: int
                     ) -> tuple[list[int], list[int]]:
    """Per-stage output_padding (height, width) for ``stages`` stride-2 up-samplings from
    the latent to exactly the output size, or a ShapeError naming the decoder."""
    _, lh, lw = latent_shape
    pads_h = _output_paddings(lh, output_shape[1], stages)
    pads_w = _output_paddings(lw, output_shape[2], stages)
    if pads_h is None or pads_w is None:
        raise ShapeError(
            f"decoder '{decoder}' with {stages} stages cannot turn a {lh}x{lw} latent into "
            f"{output_shape[1]}x{output_shape[2]} images",
            "give the decoder as many stages as the encoder (model.decoder.params.channels)",
        )
    return pads_h, pads_w


class ConvTransposeDecoder(nn.Module):
    """Stride-2 ConvTranspose+ReLU stages, then a Conv to the image channels (logits)."""

    def __init__(self, latent_shape: Shape, output_shape: Shape, channels: Sequence[int],
                 kernel: int):
        super().__init__()
        c = latent_shape[0]
        pads_h, pads_w = stride2_paddings("convtranspose", latent_shape, output_shape,
                                          len(channels))
        layers: list[nn.Module] = []
        for out, ph, pw in zip(channels, pads_h, pads_w, strict=True):
            layers += [nn.ConvTranspose2d(c, out, kernel, stride=2, padding=kernel // 2,
                                          output_padding=(ph, pw)), nn.ReLU(inplace=True)]
            c = out
        layers.append(nn.Conv2d(c, output_shape[0], kernel, padding=kernel // 2))
        self.net = nn.Sequential(*layers)
        self.latent_shape: Shape = tuple(latent_shape)  # type: ignore[assignment]
        self.output_shape: Shape = tuple(output_shape)  # type: ignore[assignment]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class BCEFromLogits(nn.Module):
    """Mean binary cross-entropy from logits, in float32 (stable for logits of any size)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class MSEOnProbabilities(nn.Module):
    """Mean squared error between sigmoid(logits) and the target, in float32."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(torch.sigmoid(logits.float()), target.float())


# --- builders: what the descriptors in components.py reference as "module:function" ---
# ``params`` are the validated params models of components.py (kept untyped here so this
# module does not import pydantic models it does not need).


def pool_encoder(params: Any, input_shape: Shape) -> StageEncoder:
    return StageEncoder("pool", input_shape, params.channels, params.kernel_size)


def strided_encoder(params: Any, input_shape: Shape) -> StageEncoder:
    return StageEncoder("strided", input_shape, params.channels, params.kernel_size)


def upsample_decoder(params: Any, latent_shape: Shape, output_shape: Shape) -> UpsampleDecoder:
    return UpsampleDecoder(latent_shape, output_shape, params.channels, params.kernel_size)


def convtranspose_decoder(params: Any, latent_shape: Shape,
                          output_shape: Shape) -> ConvTransposeDecoder:
    return ConvTransposeDecoder(latent_shape, output_shape, params.channels, params.kernel_size)


def bce_loss(params: Any) -> BCEFromLogits:
    return BCEFromLogits()


def mse_loss(params: Any) -> MSEOnProbabilities:
    return MSEOnProbabilities()

"""The torch modules behind the family's encoders and decoder (``aezoo_cae.family``):
the stochastic ``gaussian-pool`` encoder and the residual ``resnet`` encoder/decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aezoo.errors import ShapeError
from aezoo.protocols import LOGVAR, MEAN, Shape
from aezoo_cae.layers import _halve, stride2_paddings

LOGVAR_RANGE = (-30.0, 20.0)  # exp() of it stays finite in float32 and bf16


def _too_small(kind: str, stages: int, input_shape: Shape) -> ShapeError:
    return ShapeError(
        f"encoder '{kind}' with {stages} stages cannot take "
        f"{input_shape[1]}x{input_shape[2]} inputs (too small)",
        "use larger images or fewer stages (model.encoder.params.channels)",
    )


class GaussianPoolEncoder(nn.Module):
    """Conv+ReLU+MaxPool('same') stages, then conv heads for the mean and log-variance."""

    def __init__(self, input_shape: Shape, channels: Sequence[int], kernel: int,
                 latent_channels: int, dense: bool) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            if min(h, w) < 2:
                raise _too_small("gaussian-pool", len(channels), input_shape)
            layers += [nn.Conv2d(c, out, kernel, padding=kernel // 2), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c, h, w = out, _halve(h), _halve(w)
        self.net = nn.Sequential(*layers)
        self.dense = dense
        self.mean: nn.Module
        self.logvar: nn.Module
        if dense:  # linear heads over the whole feature map: a global code
            self.mean = nn.Linear(c * h * w, latent_channels)
            self.logvar = nn.Linear(c * h * w, latent_channels)
            h = w = 1
        else:
            self.mean = nn.Conv2d(c, latent_channels, kernel, padding=kernel // 2)
            self.logvar = nn.Conv2d(c, latent_channels, kernel, padding=kernel // 2)
        self.input_shape: Shape = tuple(input_shape)  # type: ignore[assignment]
        self.latent_shape: Shape = (latent_channels, h, w)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.net(x)
        if self.dense:
            features = features.flatten(1)
        mean, logvar = self.mean(features), self.logvar(features)
        shape = (-1, *self.latent_shape)  # not len(x): a traced export keeps the batch dynamic
        return {MEAN: mean.reshape(shape), LOGVAR: logvar.clamp(*LOGVAR_RANGE).reshape(shape)}


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    return nn.Identity()


class DownBlock(nn.Module):
    """conv(stride 2)-norm-ReLU-conv-norm + a strided 1x1 projection, then ReLU; ceil-halves."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: str, groups: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.main = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=2, padding=pad), _norm(norm, cout, groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, kernel, padding=pad), _norm(norm, cout, groups))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2), _norm(norm, cout, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.main(x) + self.skip(x))


class UpBlock(nn.Module):
    """ConvTranspose(stride 2)-norm-ReLU-conv-norm + a nearest-upsampled 1x1 projection."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: str, groups: int,
                 size: tuple[int, int], output_padding: tuple[int, int]) -> None:
        super().__init__()
        pad = kernel // 2
        self.size = size
        self.main = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=pad,
                               output_padding=output_padding),
            _norm(norm, cout, groups), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, kernel, padding=pad), _norm(norm, cout, groups))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1), _norm(norm, cout, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.interpolate(x, size=self.size, mode="nearest"))
        return F.relu(self.main(x) + skip)


class ResNetEncoder(nn.Module):
    def __init__(self, input_shape: Shape, channels: Sequence[int], kernel: int,
                 latent_channels: int, norm: str, groups: int) -> None:
        super().__init__()
        c, h, w = input_shape
        pad = kernel // 2
        layers: list[nn.Module] = [nn.Conv2d(c, channels[0], kernel, padding=pad),
                                   _norm(norm, channels[0], groups), nn.ReLU(inplace=True)]
        c = channels[0]
        for out in channels:
            if min(h, w) < 2:
                raise _too_small("resnet", len(channels), input_shape)
            layers.append(DownBlock(c, out, kernel, norm, groups))
            c, h, w = out, _halve(h), _halve(w)
        layers.append(nn.Conv2d(c, latent_channels, 1))
        self.net = nn.Sequential(*layers)
        self.input_shape: Shape = tuple(input_shape)  # type: ignore[assignment]
        self.latent_shape: Shape = (latent_channels, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResNetDecoder(nn.Module):
    def __init__(self, latent_shape: Shape, output_shape: Shape, channels: Sequence[int],
                 kernel: int, norm: str, groups: int) -> None:
        super().__init__()
        c, lh, lw = latent_shape
        pads_h, pads_w = stride2_paddings("resnet", latent_shape, output_shape, len(channels))
        pad = kernel // 2
        layers: list[nn.Module] = [nn.Conv2d(c, channels[0], kernel, padding=pad),
                                   _norm(norm, channels[0], groups), nn.ReLU(inplace=True)]
        c, h, w = channels[0], lh, lw
        for out, ph, pw in zip(channels, pads_h, pads_w, strict=True):
            h, w = 2 * h - 1 + ph, 2 * w - 1 + pw
            layers.append(UpBlock(c, out, kernel, norm, groups, (h, w), (ph, pw)))
            c = out
        layers.append(nn.Conv2d(c, output_shape[0], kernel, padding=pad))
        self.net = nn.Sequential(*layers)
        self.latent_shape: Shape = tuple(latent_shape)  # type: ignore[assignment]
        self.output_shape: Shape = tuple(output_shape)  # type: ignore[assignment]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# --- builders (referenced by family.py) ---


def gaussian_pool_encoder(params: Any, input_shape: Shape) -> GaussianPoolEncoder:
    return GaussianPoolEncoder(input_shape, params.channels, params.kernel_size,
                               params.latent_channels, params.dense)


def resnet_encoder(params: Any, input_shape: Shape) -> ResNetEncoder:
    return ResNetEncoder(input_shape, params.channels, params.kernel_size,
                         params.latent_channels, params.norm, params.groups)


def resnet_decoder(params: Any, latent_shape: Shape, output_shape: Shape) -> ResNetDecoder:
    return ResNetDecoder(latent_shape, output_shape, params.channels, params.kernel_size,
                         params.norm, params.groups)

"""Descriptors of the autoencoder family: regularisers, input corruptions, the stochastic
(``gaussian-pool``) and residual (``resnet``) encoders and the residual decoder.

Torch-free like ``components``: the builders are "module:function" references into
``aezoo_cae.penalties``, ``aezoo_cae.corruptions`` and ``aezoo_cae.blocks``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aezoo.protocols import (
    DecoderComponent,
    EncoderComponent,
    RegularizerComponent,
    TransformComponent,
)
from aezoo_cae.components import NoParams, StageParams, _Params

# --- regularisers (model.regularizers) ------------------------------------------------

l1_regularizer = RegularizerComponent(
    params=NoParams, build="aezoo_cae.penalties:l1",
    description="Activity L1 on the code: mean |latent| over every element of the batch "
    "(in float32). For a sparse code.",
)
kl_regularizer = RegularizerComponent(
    params=NoParams, build="aezoo_cae.penalties:kl",
    description="KL(N(mean, exp(logvar)) || N(0, I)): 0.5 * sum(exp(logvar) + mean^2 - 1 - "
    "logvar), summed over latent dims, averaged over the batch (in float32). Needs a "
    "stochastic encoder (mean and logvar), e.g. gaussian-pool.",
    needs=("mean", "logvar"),
)
orthogonal_regularizer = RegularizerComponent(
    params=NoParams, build="aezoo_cae.penalties:orthogonal",
    description="Decorrelated code: the mean squared off-diagonal entry of the correlation "
    "matrix of the flattened code across the batch (C = cov / (std std^T + 1e-6)), in [0, 1]; "
    "0 for a batch of one.",
)


# --- transforms (train.corrupt) -------------------------------------------------------


class GaussianNoiseParams(_Params):
    sigma: float = Field(0.5, ge=0, le=100, allow_inf_nan=False,
                         description="standard deviation of the added noise (the Keras "
                         "guide's noise factor)")
    clip: bool = Field(True, description="clamp the noisy images to [0, 1]")


class SaltPepperParams(_Params):
    amount: float = Field(0.1, ge=0, le=1, allow_inf_nan=False,
                          description="fraction of pixels set to 0 or 1 (half each, on "
                          "average; every channel of a pixel alike)")


class MaskParams(_Params):
    fraction: float = Field(0.25, ge=0, le=1, allow_inf_nan=False,
                            description="fraction of pixels zeroed (in expectation)")
    patch: int = Field(1, ge=1, le=1 << 20,
                       description="side of the square patches zeroed, on a grid from the "
                       "top-left corner (1: single pixels)")


gaussian_transform = TransformComponent(
    params=GaussianNoiseParams, build="aezoo_cae.corruptions:gaussian",
    description="x + sigma * N(0, 1), clamped to [0, 1] unless clip is false.",
)
salt_pepper_transform = TransformComponent(
    params=SaltPepperParams, build="aezoo_cae.corruptions:salt_pepper",
    description="Impulse noise: a fraction `amount` of pixels set to 0 (pepper) or 1 (salt).",
)
mask_transform = TransformComponent(
    params=MaskParams, build="aezoo_cae.corruptions:mask",
    description="Masking noise: each pixel (or patch x patch square) zeroed with "
    "probability `fraction`.",
)


# --- encoders and decoders --------------------------------------------------------------

Norm = Literal["group", "batch", "none"]


class GaussianPoolParams(StageParams):
    channels: list[int] = Field(
        [32, 64, 64], min_length=1, description="output channels of each Conv+ReLU+MaxPool stage"
    )
    latent_channels: int = Field(16, ge=1, le=4096,
                                 description="channels of the latent: its size with dense "
                                 "heads (latent_channels x 1 x 1), else latent_channels x "
                                 "H/2^stages x W/2^stages")
    dense: bool = Field(True, description="linear heads over the whole feature map (a "
                        "global latent_channels x 1 x 1 code, as in the classic VAE); false: "
                        "conv heads, a spatial code")


class ResNetEncoderParams(StageParams):
    channels: list[int] = Field(
        [16, 32, 64], min_length=1,
        description="output channels of each stride-2 residual block (a stem conv gives "
        "the first block channels[0])",
    )
    latent_channels: int = Field(8, ge=1, le=4096, description="channels of the latent "
                                 "(a 1x1 conv head)")
    norm: Norm = Field("group", description="normalisation after each conv: GroupNorm, "
                       "BatchNorm or none")
    groups: int = Field(8, ge=1, le=4096, description="GroupNorm groups (at most the "
                        "channels; the largest divisor of both is used)")


class ResNetDecoderParams(StageParams):
    channels: list[int] = Field(
        [64, 32, 16], min_length=1,
        description="output channels of each upsampling (x2) residual block",
    )
    norm: Norm = Field("group", description="normalisation after each conv")
    groups: int = Field(8, ge=1, le=4096, description="GroupNorm groups")


gaussian_pool_encoder = EncoderComponent(
    params=GaussianPoolParams, build="aezoo_cae.blocks:gaussian_pool_encoder",
    description="Stochastic: Conv+ReLU+MaxPool stages (as `pool`), then two heads (linear, "
    "or conv with dense=false) giving the mean and log-variance of a Gaussian latent "
    "(sampled in training, the mean in eval).",
)
resnet_encoder = EncoderComponent(
    params=ResNetEncoderParams, build="aezoo_cae.blocks:resnet_encoder",
    description="Conv stem, then stride-2 residual blocks (conv-norm-ReLU-conv-norm plus a "
    "strided 1x1 projection); halves H and W per block (ceil); a 1x1 conv to the latent.",
)
resnet_decoder = DecoderComponent(
    params=ResNetDecoderParams, build="aezoo_cae.blocks:resnet_decoder",
    description="Conv stem, then x2 residual blocks (ConvTranspose with the output_padding "
    "that hits the exact size, plus a nearest-upsampled 1x1 projection); a conv to the "
    "image channels.",
)

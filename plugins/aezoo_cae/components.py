"""Component descriptors: hyperparameter models and builders.

Torch is imported inside the builders only, so discovering this plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aezoo.protocols import (
    DecoderComponent,
    EncoderComponent,
    LossComponent,
    Shape,
)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageParams(_Params):
    channels: list[int] = Field(
        min_length=1, description="output channels of each stage; one stage per entry"
    )
    kernel_size: int = Field(3, ge=1, le=15, description="odd convolution kernel size")

    @field_validator("channels")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(c <= 0 for c in value):
            raise ValueError("every channel count must be positive")
        return value

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("kernel_size must be odd ('same' padding)")
        return value


class PoolParams(StageParams):
    channels: list[int] = Field(
        [16, 8, 8], min_length=1, description="output channels of each Conv+ReLU+MaxPool stage"
    )


class StridedParams(StageParams):
    channels: list[int] = Field(
        [16, 32, 8], min_length=1, description="output channels of each stride-2 Conv+ReLU stage"
    )


class UpsampleParams(StageParams):
    channels: list[int] = Field(
        [8, 8, 16], min_length=1, description="output channels of each Conv+ReLU+Upsample stage"
    )


class ConvTransposeParams(StageParams):
    channels: list[int] = Field(
        [32, 16, 16], min_length=1,
        description="output channels of each stride-2 ConvTranspose+ReLU stage",
    )


class NoParams(_Params):
    pass


def _pool(params: PoolParams, input_shape: Shape) -> Any:
    from aezoo_cae.layers import StageEncoder

    return StageEncoder("pool", input_shape, params.channels, params.kernel_size)


def _strided(params: StridedParams, input_shape: Shape) -> Any:
    from aezoo_cae.layers import StageEncoder

    return StageEncoder("strided", input_shape, params.channels, params.kernel_size)


def _upsample(params: UpsampleParams, latent_shape: Shape, output_shape: Shape) -> Any:
    from aezoo_cae.layers import UpsampleDecoder

    return UpsampleDecoder(latent_shape, output_shape, params.channels, params.kernel_size)


def _convtranspose(params: ConvTransposeParams, latent_shape: Shape, output_shape: Shape) -> Any:
    from aezoo_cae.layers import ConvTransposeDecoder

    return ConvTransposeDecoder(latent_shape, output_shape, params.channels, params.kernel_size)


def _bce(params: NoParams) -> Any:
    from aezoo_cae.layers import BCEFromLogits

    return BCEFromLogits()


def _mse(params: NoParams) -> Any:
    from aezoo_cae.layers import MSEOnProbabilities

    return MSEOnProbabilities()


pool_encoder = EncoderComponent(
    params=PoolParams, build=_pool,
    description="Conv3x3+ReLU+MaxPool2x2 ('same') stages; halves H and W per stage (ceil).",
)
strided_encoder = EncoderComponent(
    params=StridedParams, build=_strided,
    description="Stride-2 Conv+ReLU stages; halves H and W per stage (ceil).",
)
upsample_decoder = DecoderComponent(
    params=UpsampleParams, build=_upsample,
    description="Conv+ReLU+nearest Upsample x2 stages, then a Conv to the image channels; "
    "'valid' convs trim odd sizes (the tutorial's 16->14). Needs H, W multiples of 4.",
)
convtranspose_decoder = DecoderComponent(
    params=ConvTransposeParams, build=_convtranspose,
    description="Stride-2 ConvTranspose+ReLU stages (output_padding per stage to hit the "
    "exact size), then a Conv to the image channels.",
)
bce_loss = LossComponent(
    params=NoParams, build=_bce,
    description="Binary cross-entropy computed from logits (stable, AMP-safe).",
)
mse_loss = LossComponent(
    params=NoParams, build=_mse,
    description="Mean squared error between sigmoid(logits) and the target.",
)

"""Component descriptors: hyperparameter models and builders.

Builders are "module:function" references into ``aezoo_cae.layers``: torch is imported
only when a model is built, so discovering this plugin stays cheap.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aezoo.protocols import DecoderComponent, EncoderComponent, LossComponent


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


pool_encoder = EncoderComponent(
    params=PoolParams, build="aezoo_cae.layers:pool_encoder",
    description="Conv3x3+ReLU+MaxPool2x2 ('same') stages; halves H and W per stage (ceil).",
)
strided_encoder = EncoderComponent(
    params=StridedParams, build="aezoo_cae.layers:strided_encoder",
    description="Stride-2 Conv+ReLU stages; halves H and W per stage (ceil).",
)
upsample_decoder = DecoderComponent(
    params=UpsampleParams, build="aezoo_cae.layers:upsample_decoder",
    description="Conv+ReLU+nearest Upsample x2 stages, then a Conv to the image channels; "
    "'valid' convs trim odd sizes (the tutorial's 16->14). Needs H, W multiples of 4.",
)
convtranspose_decoder = DecoderComponent(
    params=ConvTransposeParams, build="aezoo_cae.layers:convtranspose_decoder",
    description="Stride-2 ConvTranspose+ReLU stages (output_padding per stage to hit the "
    "exact size), then a Conv to the image channels.",
)
bce_loss = LossComponent(
    params=NoParams, build="aezoo_cae.layers:bce_loss",
    description="Binary cross-entropy computed from logits (stable, AMP-safe).",
)
mse_loss = LossComponent(
    params=NoParams, build="aezoo_cae.layers:mse_loss",
    description="Mean squared error between sigmoid(logits) and the target.",
)

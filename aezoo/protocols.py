"""What a plugin provides: Encoder, Decoder and Loss protocols and their descriptors.

Descriptors are plain dataclasses: defining one imports neither torch nor pydantic, so
``aezoo list`` can read every variant without loading any model code. Torch is imported
by the builders, when a model is actually made.

Conventions every component follows:
- Shapes are ``(channels, height, width)``, batch dimension excluded.
- Data is in [0, 1]. Decoders return *logits*; the Autoencoder applies the sigmoid,
  and losses receive logits so they can stay numerically stable (BCE from logits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

Shape = tuple[int, int, int]


def format_shape(shape: tuple[int, ...] | list[int]) -> str:
    """``(1, 28, 28)`` -> ``1x28x28``: how every message and table writes a shape."""
    return "x".join(map(str, shape))


@runtime_checkable
class Encoder(Protocol):
    """Maps a batch ``(N, *input_shape)`` to latents ``(N, *latent_shape)``."""

    input_shape: Shape
    latent_shape: Shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Decoder(Protocol):
    """Maps latents ``(N, *latent_shape)`` to logits ``(N, *output_shape)``."""

    latent_shape: Shape
    output_shape: Shape

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Loss(Protocol):
    """Scalar loss from decoder logits and the target batch in [0, 1]."""

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class EncoderComponent:
    """An encoder a plugin provides. ``build(params, input_shape) -> Encoder``."""

    params: type[BaseModel]
    build: Callable[[Any, Shape], Encoder]
    description: str = ""
    kind: str = field(default="encoder", init=False)


@dataclass(frozen=True)
class DecoderComponent:
    """A decoder. ``build(params, latent_shape, output_shape) -> Decoder``."""

    params: type[BaseModel]
    build: Callable[[Any, Shape, Shape], Decoder]
    description: str = ""
    kind: str = field(default="decoder", init=False)


@dataclass(frozen=True)
class LossComponent:
    """A loss. ``build(params) -> Loss``."""

    params: type[BaseModel]
    build: Callable[[Any], Loss]
    description: str = ""
    kind: str = field(default="loss", init=False)


Component = EncoderComponent | DecoderComponent | LossComponent


@dataclass(frozen=True)
class Variant:
    """A named preset: which encoder, decoder and loss, their params, training defaults.

    ``param_count`` is declared metadata (parameters at ``input_shape``) so listings need
    not build the model; the conformance tests keep it honest.
    ``example_shapes`` are further input shapes the variant promises to serve; the
    conformance kit (``aezoo.testing``) checks the round trip at each of them.
    ``init`` is ``"default"`` (PyTorch's) or ``"glorot"`` (Keras: Glorot-uniform
    weights, zero biases).
    """

    encoder: str
    decoder: str
    loss: str
    encoder_params: Mapping[str, Any] = field(default_factory=dict)
    decoder_params: Mapping[str, Any] = field(default_factory=dict)
    loss_params: Mapping[str, Any] = field(default_factory=dict)
    input_shape: Shape = (1, 28, 28)
    init: str = "default"
    train: Mapping[str, Any] = field(default_factory=dict)
    param_count: int | None = None
    description: str = ""
    example_shapes: tuple[Shape, ...] = ()

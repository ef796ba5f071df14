"""The Autoencoder: an encoder, a decoder and a loss built from a ModelSpec."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn

from aezoo import registry
from aezoo.config import build_model_spec, component_params
from aezoo.errors import PluginError, ShapeError
from aezoo.protocols import Decoder, Encoder, Loss, Shape, format_shape
from aezoo.specs import ModelSpec

MAX_CHECKED_INPUT = 1 << 20  # input elements above which the shape check runs on meta


class Autoencoder(nn.Module):
    """``encode`` -> latent, ``decode`` -> reconstruction in [0, 1], ``forward`` = both.

    ``spec`` is the resolved ModelSpec that rebuilds this model; it travels in checkpoints.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, loss: Loss,
                 spec: ModelSpec) -> None:
        super().__init__()
        self.encoder = encoder  # nn.Modules (from_spec checks): registered as submodules
        self.decoder = decoder
        self.loss_fn = loss
        self.spec = spec

    @property
    def input_shape(self) -> Shape:
        return self.spec.input_shape

    @property
    def latent_shape(self) -> Shape:
        c, h, w = self.encoder.latent_shape
        return (c, h, w)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.spec.input_shape or x.dim() != 4:
            raise ShapeError(f"this model takes (N, {', '.join(map(str, self.input_shape))}) "
                             f"images, got {tuple(x.shape)}",
                             "pass a batch of the shape it was built for (model.input_shape)")
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training objective on a batch in [0, 1]: loss(decoder logits, x)."""
        return self.loss_fn(self.decode_logits(self.encode(x)), x)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def glorot_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform weights, zero biases, for every conv and linear layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _builder(descriptor: Any) -> Callable[..., Any]:
    # A "module:function" string was made a LazyRef when the descriptor was defined.
    return cast(Callable[..., Any], descriptor.build)


def from_spec(spec: ModelSpec, *, check: bool = True) -> Autoencoder:
    """Build the modules a resolved spec describes; shapes are checked here, at build time.

    ``check=False`` skips the shape check (``load`` runs it on the meta device first).
    """
    enc_desc = registry.encoder(spec.encoder.name)
    dec_desc = registry.decoder(spec.decoder.name)
    loss_desc = registry.loss(spec.loss.name)
    encoder = _builder(enc_desc)(component_params(spec, "encoder"), spec.input_shape)
    latent = tuple(getattr(encoder, "latent_shape", ()))
    if len(latent) != 3:
        raise PluginError(f"encoder '{spec.encoder.name}' has no latent_shape (C, H, W)",
                          "the plugin must set encoder.latent_shape")
    decoder = _builder(dec_desc)(component_params(spec, "decoder"), latent, spec.input_shape)
    loss = _builder(loss_desc)(component_params(spec, "loss"))
    if not all(isinstance(m, nn.Module) for m in (encoder, decoder, loss)):
        raise PluginError("a component builder did not return a torch.nn.Module",
                          "fix the plugin's builder")
    model = Autoencoder(encoder, decoder, loss, spec)
    if spec.init == "glorot":
        glorot_init(model)
    if check:
        # One forward pass; for a huge input (a typo'd --image-size, a hostile file) it runs
        # on a meta-device twin: slower to start, but it allocates nothing.
        huge = math.prod(spec.input_shape) > MAX_CHECKED_INPUT and model_device(model) != "meta"
        _check_shapes(_on_meta(spec) if huge else model)
    return model


def model_device(model: nn.Module) -> str:
    return next((p.device.type for p in model.parameters()), "cpu")


def _on_meta(spec: ModelSpec) -> Autoencoder:
    with torch.device("meta"):
        return from_spec(spec, check=False)


def _check_shapes(model: Autoencoder) -> None:
    """One tiny forward pass: a shape bug surfaces now, not after the data has loaded."""
    c, h, w = model.input_shape
    with torch.no_grad():
        out = model.decode_logits(model.encode(torch.zeros(1, c, h, w, device=model_device(model))))
    if tuple(out.shape[1:]) != (c, h, w):
        raise ShapeError(
            f"{model.spec.encoder.name}+{model.spec.decoder.name} turns {c}x{h}x{w} inputs into "
            f"{format_shape(out.shape[1:])} outputs",
            "the decoder plugin must return exactly the input shape",
        )


def build(name_or_spec: str | ModelSpec | Mapping[str, Any], **overrides: Any) -> Autoencoder:
    """A model from a variant name (or spec), e.g. ``build("cae-upsample", loss="mse")``."""
    return from_spec(build_model_spec(name_or_spec, overrides))

"""The Autoencoder: an encoder, a decoder and a loss built from a ModelSpec."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from aezoo import inference, registry
from aezoo.config import build_model_spec, component_params
from aezoo.errors import PluginError, ShapeError
from aezoo.objective import (
    RECON,
    Objective,
    UnavailableLoss,
    build_loss,
    build_regularizers,
    check_needs,
    total,
)
from aezoo.protocols import (
    LATENT,
    LOGVAR,
    MEAN,
    RESERVED_NAMES,
    Decoder,
    Encoder,
    Forward,
    LazyRef,
    Loss,
    Shape,
    builder,
    format_shape,
)
from aezoo.specs import ModelSpec
from aezoo.tensors import evaluating

MAX_CHECKED_INPUT = 1 << 20  # input elements above which the shape check runs on meta


class Autoencoder(nn.Module):
    """``encode`` -> latent, ``decode`` -> reconstruction in [0, 1], ``forward`` = both.

    Training goes through :meth:`forward_pass` (a :class:`Forward`: input, target, latent,
    logits, the encoder's extras) and :meth:`terms` (the objective's named terms). An
    encoder that returns ``{"mean", "logvar"}`` is stochastic: the model samples it with
    the reparameterisation trick in training and uses the mean in eval.

    ``spec`` is the resolved ModelSpec that rebuilds this model; it travels in checkpoints.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, loss: Loss,
                 spec: ModelSpec, regularizers: list[tuple[str, float, nn.Module]] | None = None
                 ) -> None:
        super().__init__()
        self.encoder = encoder  # nn.Modules (from_spec checks): registered as submodules
        self.decoder = decoder
        self.loss_fn = loss
        self.objective = Objective(regularizers or [])
        self.spec = spec
        self.stochastic = False  # set by the build-time probe
        self.term_names: list[str] = [RECON]  # likewise

    @property
    def input_shape(self) -> Shape:
        return self.spec.input_shape

    @property
    def latent_shape(self) -> Shape:
        c, h, w = self.encoder.latent_shape
        return (c, h, w)

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.spec.input_shape or x.dim() != 4:
            raise ShapeError(f"this model takes (N, {', '.join(map(str, self.input_shape))}) "
                             f"images, got {tuple(x.shape)}",
                             "pass a batch of the shape it was built for (model.input_shape)")

    def encode_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(code, extras) of a batch: a stochastic encoder's code is its mean."""
        self._check_input(x)
        out: Any = self.encoder(x)
        if isinstance(out, torch.Tensor):
            return out, {}
        if not isinstance(out, Mapping):
            raise PluginError(f"encoder '{self.spec.encoder.name}' returned a "
                              f"{type(out).__name__}", "return a tensor or a dict of tensors")
        extras = dict(out)
        if LATENT in extras:
            return extras.pop(LATENT), extras
        if MEAN in extras and LOGVAR in extras:
            return extras[MEAN], extras
        raise PluginError(f"encoder '{self.spec.encoder.name}' returned a dict without "
                          f"'{LATENT}' or '{MEAN}'/'{LOGVAR}'",
                          "return the code as 'latent', or a Gaussian as 'mean' and 'logvar'")

    def encode(self, x: Any, *, batch_size: int | None = None, device: Any = None,
               output: str | None = None, layout: str = "auto") -> Any:
        """The code of a batch (a stochastic encoder's mean).

        A float tensor of the model's ``(N, C, H, W)`` shape, without options, goes straight
        through the encoder (on its device, with autograd: what training and plugins use).
        Anything else — numpy arrays, uint8, NHWC, or any option — takes the batch path of
        :mod:`aezoo.inference`: batched, without gradients, numpy out for numpy in."""
        if (isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() == 4
                and tuple(x.shape[1:]) == self.spec.input_shape and batch_size is None
                and device is None and output is None and layout == "auto"):
            return self.encode_parts(x)[0]
        return inference.encode(self, x, batch_size=batch_size, device=device, output=output,
                                layout=layout)

    def reconstruct(self, images: Any, *, batch_size: int | None = None, device: Any = None,
                    output: str | None = None, layout: str = "auto") -> Any:
        """Reconstructions in [0, 1] (float32) of uint8 or float images, NCHW or NHWC, in
        the layout they came in; batched, without gradients (:mod:`aezoo.inference`)."""
        return inference.reconstruct(self, images, batch_size=batch_size, device=device,
                                     output=output, layout=layout)

    def score(self, images: Any, metric: str | None = None, *, batch_size: int | None = None,
              device: Any = None, output: str | None = None, layout: str = "auto") -> Any:
        """Per-image reconstruction error (float64, higher is worse): ``bce``, ``mse`` or
        ``ssim`` (``1 - SSIM``), default the model's loss (bce or mse, else mse); the
        per-image values ``aezoo eval`` averages."""
        return inference.score(self, images, metric, batch_size=batch_size, device=device,
                               output=output, layout=layout)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: Any) -> Any:
        """Reconstructions in [0, 1] of codes ``(N, *latent_shape)``: a float tensor goes
        straight through the decoder (with autograd); a numpy array gives numpy, without
        gradients. Anything else is refused with aezoo's errors (:func:`inference.codes`)."""
        if isinstance(z, torch.Tensor):
            return torch.sigmoid(self.decode_logits(inference.codes(self, z)))
        t = inference.codes(self, z)
        with torch.no_grad():
            return torch.sigmoid(self.decode_logits(t)).cpu().numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(self.encode_parts(x)[0]))

    def forward_pass(self, x: torch.Tensor, target: torch.Tensor | None = None) -> Forward:
        """The whole forward pass of a batch (``x`` as the encoder sees it, ``target`` the
        clean images; default ``x``)."""
        code, extras = self.encode_parts(x)
        latent = code
        if self.training and MEAN in extras and LOGVAR in extras:
            latent = sample_latent(extras)  # the torch RNG: checkpointed
        return Forward(x, x if target is None else target, latent, self.decoder(latent), extras)

    def terms(self, x: torch.Tensor, target: torch.Tensor | None = None
              ) -> dict[str, torch.Tensor]:
        """The objective's named terms on a batch in [0, 1]."""
        return self.objective(self.forward_pass(x, target), self.loss_fn)

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective on a batch in [0, 1]: the sum of :meth:`terms`."""
        return total(self.terms(x, target))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def sample_latent(extras: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """The reparameterisation trick: ``mean + exp(logvar / 2) * noise`` (noise: a standard
    normal draw of the mean's shape; default from torch's global RNG)."""
    std = torch.exp(0.5 * extras[LOGVAR])
    return extras[MEAN] + std * (torch.randn_like(std) if noise is None else noise)


def glorot_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform weights, zero biases, for every conv and linear layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def from_spec(spec: ModelSpec, *, check: bool = True, training_parts: bool = True
              ) -> Autoencoder:
    """Build the modules a resolved spec describes; shapes are checked here, at build time.

    ``check=False`` skips the shape check (``load`` runs it on the meta device first).
    ``training_parts=False`` leaves out the loss and regularisers (their plugins may be
    uninstalled): the model encodes and decodes, but has no objective.
    """
    enc_desc = registry.encoder(spec.encoder.name)
    dec_desc = registry.decoder(spec.decoder.name)
    encoder = builder(enc_desc)(component_params(spec, "encoder"), spec.input_shape)
    latent = tuple(getattr(encoder, "latent_shape", ()))
    if len(latent) != 3:
        raise PluginError(f"encoder '{spec.encoder.name}' has no latent_shape (C, H, W)",
                          "the plugin must set encoder.latent_shape")
    decoder = builder(dec_desc)(component_params(spec, "decoder"), latent, spec.input_shape)
    loss = (build_loss(spec.loss, spec.input_shape) if training_parts
            else UnavailableLoss(spec.loss.name))
    if not all(isinstance(m, nn.Module) for m in (encoder, decoder)):
        raise PluginError("a component builder did not return a torch.nn.Module",
                          "fix the plugin's builder")
    model = Autoencoder(encoder, decoder, cast(Loss, loss), spec,
                        build_regularizers(spec.regularizers) if training_parts else [])
    if spec.init == "glorot":
        glorot_init(model)
    if check:
        # One forward pass; for a huge input (a typo'd --image-size, a hostile file) it runs
        # on a meta-device twin: slower to start, but it allocates nothing.
        huge = math.prod(spec.input_shape) > MAX_CHECKED_INPUT and model_device(model) != "meta"
        twin = on_meta(spec, training_parts=training_parts) if huge else model
        probe(twin)
        model.stochastic, model.term_names = twin.stochastic, twin.term_names
    return model


def import_builders(spec: ModelSpec, training_parts: bool = True) -> None:
    """Import the module behind every ``"module:function"`` builder ``spec`` names, now.

    Call it before building under a device context (``torch.device("meta")``): a plugin
    module imported inside one would create its module-level tensors (a Sobel kernel) on
    that device, for the rest of the process. Importing a plugin never depends on where
    aezoo happens to be building."""
    parts = [registry.encoder(spec.encoder.name), registry.decoder(spec.decoder.name)]
    if training_parts:
        parts.append(registry.loss(spec.loss.name))
        parts += [registry.load("regularizer", r.name) for r in spec.regularizers]
    for descriptor in parts:
        build = builder(descriptor)
        if isinstance(build, LazyRef):
            build.resolve()


def on_meta(spec: ModelSpec, *, check: bool = False, training_parts: bool = True
            ) -> Autoencoder:
    """``from_spec`` on the meta device (nothing allocated), plugin modules imported first."""
    import_builders(spec, training_parts)
    with torch.device("meta"):
        return from_spec(spec, check=check, training_parts=training_parts)


def model_device(model: nn.Module) -> str:
    return next((p.device.type for p in model.parameters()), "cpu")


def probe(model: Autoencoder) -> None:
    """One tiny forward pass: a shape bug surfaces now, not after the data has loaded.

    In eval mode and without gradients, so it changes nothing (BatchNorm statistics
    included); it also learns the objective's term names and whether the encoder is
    stochastic."""
    c, h, w = model.input_shape
    with evaluating(model):
        x = torch.zeros(1, c, h, w, device=model_device(model))
        fwd = model.forward_pass(x)
        out = fwd.logits
        if tuple(out.shape[1:]) != (c, h, w):
            raise ShapeError(f"{model.spec.encoder.name}+{model.spec.decoder.name} turns "
                             f"{c}x{h}x{w} inputs into {format_shape(out.shape[1:])} outputs",
                             "the decoder plugin must return exactly the input shape")
        model.stochastic = MEAN in fwd.extras and LOGVAR in fwd.extras
        if not isinstance(model.loss_fn, UnavailableLoss):
            check_needs(model.spec.regularizers, fwd.extras, model.spec.encoder.name)
            model.term_names = list(model.objective(fwd, model.loss_fn))
            taken = [n for n in model.term_names if n in RESERVED_NAMES]
            if taken and len(model.term_names) > 1:
                raise PluginError(f"the objective has a term named '{taken[0]}', which would "
                                  "overwrite a standard column",
                                  f"name terms otherwise (not {', '.join(RESERVED_NAMES)})")


def build(name_or_spec: str | ModelSpec | Mapping[str, Any], **overrides: Any) -> Autoencoder:
    """A model from a variant name (or spec), e.g. ``build("cae-upsample", loss="mse")``."""
    return from_spec(build_model_spec(name_or_spec, overrides))

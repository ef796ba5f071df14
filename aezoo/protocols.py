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

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aezoo.errors import PluginError, summary

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

Shape = tuple[int, int, int]
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class LazyRef:
    """A callable given as ``"package.module:attribute"``, imported on its first call.

    Descriptors accept one wherever they take a builder or loader, so a plugin's
    descriptor module names its torch code without importing it (no trampolines).
    """

    def __init__(self, ref: str) -> None:
        if not _REF.match(ref):
            raise ValueError(f"{ref!r} is not a 'package.module:attribute' reference")
        self.ref = ref
        self._target: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The referenced callable (imported once)."""
        if self._target is None:
            module, _, attr = self.ref.partition(":")
            try:
                target: Any = importlib.import_module(module)
                for part in attr.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError) as exc:
                raise PluginError(f"cannot import {self.ref} ({summary(exc)})",
                                  "reinstall or fix the plugin that provides it") from exc
            if not callable(target):
                raise PluginError(f"{self.ref} is a {type(target).__name__}, not callable",
                                  "fix the plugin that provides it")
            self._target = target
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyRef({self.ref!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LazyRef) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)


def builder(descriptor: Any) -> Callable[..., Any]:
    """A descriptor's ``build`` as the callable it is (a ``"module:attr"`` string was made a
    :class:`LazyRef` when the descriptor was defined)."""
    return descriptor.build


def lazy(value: Any) -> Any:
    """``value``, with a ``"module:attr"`` string turned into a :class:`LazyRef`."""
    return LazyRef(value) if isinstance(value, str) else value


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
    """Scalar loss from decoder logits and the target batch in [0, 1].

    A loss that sets ``sees_forward = True`` is called with the whole :class:`Forward`
    instead, and may return named terms (``{"recon": ..., "kl": ...}``): the objective is
    their sum, and each term is logged."""

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Forward:
    """What one training forward pass produced; losses and regularisers may read all of it.

    ``input`` is what the encoder saw (corrupted, when a transform is on), ``target`` the
    clean batch in [0, 1]. ``latent`` is the code the decoder decoded: for a stochastic
    encoder a reparameterised sample in training, the mean in eval. ``extras`` holds what
    the encoder returned beside its code (``mean``, ``logvar``, codebook indices, ...).
    """

    input: torch.Tensor
    target: torch.Tensor
    latent: torch.Tensor
    logits: torch.Tensor
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)


# What an encoder may return instead of a bare latent: a mapping with "latent" (plus any
# extras), or "mean" and "logvar" (a diagonal Gaussian: the model samples it in training).
LATENT, MEAN, LOGVAR = "latent", "mean", "logvar"
# Columns of metrics.jsonl/csv: no objective term and no trainer.log name may take one.
RESERVED_NAMES = ("epoch", "train_loss", "val_loss", "seconds", "images_per_s", "lr", "terms",
                  "loss")


@dataclass(frozen=True)
class _Part:
    """What every built part declares: a params model, a builder (a ``"module:function"``
    string is imported when a model is built), a description, and its kind."""

    params: type[BaseModel]
    build: Callable[..., Any] | str
    description: str = ""
    kind: str = field(default="", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "build", lazy(self.build))


@dataclass(frozen=True)
class EncoderComponent(_Part):
    """An encoder a plugin provides. ``build(params, input_shape) -> Encoder``."""

    kind: str = field(default="encoder", init=False)


@dataclass(frozen=True)
class DecoderComponent(_Part):
    """A decoder. ``build(params, latent_shape, output_shape) -> Decoder``."""

    kind: str = field(default="decoder", init=False)


@dataclass(frozen=True)
class LossComponent(_Part):
    """A loss. ``build(params) -> Loss``.

    ``shape_aware``: the builder is called as ``build(params, input_shape)``, so a loss
    that cannot serve small images (SSIM) refuses them at build time."""

    shape_aware: bool = False
    kind: str = field(default="loss", init=False)


@dataclass(frozen=True)
class RegularizerComponent(_Part):
    """A latent regulariser: ``build(params) -> module``, ``module(forward) -> scalar``.

    Used on any variant through ``model.regularizers`` (a name, a weight and params); the
    weighted value is a named term of the objective. ``needs`` lists the ``Forward.extras``
    keys it reads (e.g. ``("mean", "logvar")`` for KL, ``("z_e", "z_q")`` for a VQ
    commitment term), checked when the model is built. ``requires`` names other parts the
    run must use with it, as ``"KIND:NAME"`` (see :class:`CallbackComponent`).
    """

    needs: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    kind: str = field(default="regularizer", init=False)


@dataclass(frozen=True)
class TransformComponent(_Part):
    """A training-time input corruption: ``build(params) -> t``, ``t(x, generator) -> x'``.

    ``x`` is a float batch in [0, 1]; every random draw must come from ``generator`` (the
    trainer checkpoints it, so resume stays bit-exact). The target stays the clean batch.
    """

    kind: str = field(default="transform", init=False)


@dataclass(frozen=True)
class OptimizerComponent(_Part):
    """An optimiser: ``build(params, parameters, train_spec, fused) -> torch.optim.Optimizer``.

    ``params`` validates ``train.optimizer_params``; the common hyperparameters (``lr``,
    ``weight_decay``, ``betas``, ``eps``, ``momentum``) are read from the train spec.
    ``fused`` is True on CUDA, where a fused kernel avoids host syncs."""

    kind: str = field(default="optimizer", init=False)


@dataclass(frozen=True)
class ScheduleComponent(_Part):
    """A learning-rate schedule: ``build(params, train_spec, steps_per_epoch) -> lr(step)``.

    ``lr(step)`` (0-based optimiser step) must be a pure function of the step, so resume
    needs nothing but the step count. ``params`` validates ``train.scheduler_params``."""

    kind: str = field(default="schedule", init=False)


@dataclass(frozen=True)
class CallbackComponent(_Part):
    """A training callback with hyperparameters: ``build(params, run_dir) -> callback``.

    ``params`` validates ``train.callback_params.NAME``. ``requires`` names the parts it
    belongs with, as ``"KIND:NAME"`` (``("regularizer:vq-commit",)`` for a callback that
    resets a codebook's dead entries): a run without one of them is refused before its
    data loads, in one line naming both. A plain callable ``factory(run_dir)`` (the
    earlier API) still registers a callback without params."""

    requires: tuple[str, ...] = ()
    kind: str = field(default="callback", init=False)


@dataclass(frozen=True)
class MetricComponent:
    """A reconstruction metric: ``compute(recon, target) -> per-image values (N,)``, both
    batches in [0, 1]. ``aezoo eval`` reports the mean of every installed metric (or of
    those ``--metric`` names); ``train.metrics`` adds chosen ones to each epoch's
    validation log.

    With ``sees_forward=True`` it is called as ``compute(forward)`` with the evaluation's
    :class:`Forward` (input, target, latent, logits, the encoder's extras), like a loss
    that sees the forward pass. A scalar result counts as the batch's mean.
    ``higher_is_better`` says which way is better (PSNR: True, an error: False)."""

    compute: Callable[..., Any] | str
    description: str = ""
    higher_is_better: bool = False
    sees_forward: bool = False
    kind: str = field(default="metric", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compute", lazy(self.compute))


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
    # Latent regularisers, each {"name": ..., "weight": ..., "params": {...}}.
    regularizers: tuple[Mapping[str, Any], ...] = ()
    train: Mapping[str, Any] = field(default_factory=dict)
    param_count: int | None = None
    description: str = ""
    example_shapes: tuple[Shape, ...] = ()

"""Pydantic specs: the validated description of a model, its data and its training.

Everything a run needs is one ``RunSpec``; it is validated once, at the edge, and
saved beside the results (``run.json``) and, for the model part, inside the checkpoint.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aezoo import fileio
from aezoo.errors import SpecError

MAX_COUNT = 2**62  # counts stay far inside int64 (torch step counters, tensor sizes)
MAX_SEED = 2**64 - 1  # what torch.manual_seed takes
MAX_SIDE = 1 << 20  # pixels per side (and channels); bigger inputs are typos, not images
PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT)]
Side = Annotated[int, Field(gt=0, le=MAX_SIDE)]
# Bounds on a spec's size and structure, so a hostile model file or config costs
# milliseconds to refuse, not seconds and gigabytes (a 10 MB variant name once took 1.4 GB,
# 50,000 regularisers 13 s): names, lists and params far beyond any real spec.
MAX_SPEC_BYTES = fileio.MAX_SPEC_BYTES  # a spec as text: a config file, a model's header
MAX_NAME = 256  # a component, variant, optimiser, schedule, metric or callback name
MAX_PATH = 4096  # a dataset name may be a path or URL (PATH_MAX)
MAX_ITEMS = 64  # regularisers, metrics, callbacks
MAX_PARAMS = 256  # keys of one params table
MAX_VALUES = 10_000  # values nested in one params table, all levels together
MAX_DEPTH = 16
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _bounded_params(value: dict[str, Any]) -> dict[str, Any]:
    """A params table of at most MAX_VALUES values nested at most MAX_DEPTH deep (counted
    with an explicit stack: bounded time, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ValueError(f"holds over {MAX_VALUES:,} values (the limit)")
        if depth > MAX_DEPTH:
            raise ValueError(f"is nested over {MAX_DEPTH} levels deep (the limit)")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item)
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and len(item) > MAX_PATH:
            raise ValueError(f"holds a string of {len(item):,} characters (the limit is "
                             f"{MAX_PATH:,})")
    return value


Params = Annotated[dict[str, Any], Field(max_length=MAX_PARAMS),
                   AfterValidator(_bounded_params)]


class Strict(BaseModel):
    """Unknown keys are errors, so a typo never silently does nothing."""

    # allow_inf_nan=False: lr=inf passes gt=0 and would only show up as NaN losses later.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ComponentSpec(Strict):
    """A component by its public name (or ``DIST:NAME``) and its hyperparameters."""

    name: Name = Field(description="registered name, or DIST:NAME")
    params: Params = Field(default_factory=dict,
                           description="hyperparameters, validated by the component")


class RegularizerSpec(Strict):
    """A latent regulariser by name, its weight in the objective, and its params."""

    name: Name = Field(description="registered name (`aezoo list --components`)")
    weight: float = Field(1.0, ge=0, description="the term added to the objective is "
                          "weight * penalty")
    params: Params = Field(default_factory=dict,
                           description="hyperparameters, validated by the regulariser")


class ModelSpec(Strict):
    """Which encoder, decoder and loss, their params, and the input shape (C, H, W)."""

    variant: str | None = Field(None, max_length=MAX_NAME,
                                description="the preset this spec started from")
    encoder: ComponentSpec
    decoder: ComponentSpec
    loss: ComponentSpec
    input_shape: tuple[Side, Side, Side] = Field((1, 28, 28), description="channels, height, width")
    init: Literal["default", "glorot"] = Field(
        "default", description="weight init: PyTorch's default, or Keras' Glorot-uniform")
    regularizers: list[RegularizerSpec] = Field(
        default_factory=list, max_length=MAX_ITEMS,
        description="latent regularisers: each a named, weighted term "
        "of the objective (e.g. l1 for a sparse code, kl for a VAE)")


class Anneal(Strict):
    """A term's weight over training (``train.anneal``): a factor that goes from ``start``
    to ``end`` over the first ``epochs`` (or ``steps``), then stays at ``end``. A pure
    function of the optimiser step, so a resumed run uses the very same factors."""

    start: float = Field(0.0, ge=0, description="the factor at the first step")
    end: float = Field(1.0, ge=0, description="the factor once the ramp is over")
    epochs: float | None = Field(None, gt=0, le=MAX_COUNT,
                                 description="length of the ramp in epochs (or give steps)")
    steps: PositiveInt | None = Field(None, description="length of the ramp in optimiser steps")
    after: float = Field(0.0, ge=0, le=MAX_COUNT,
                         description="epochs at start before the ramp (at the start factor)")
    shape: Literal["linear", "cosine"] = Field("linear", description="linear or cosine ramp")

    @model_validator(mode="after")
    def _one_length(self) -> Anneal:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give the ramp's length as epochs or as steps (one of them)")
        return self

    def factor(self, step: int, steps_per_epoch: int) -> float:
        """The factor for the optimiser step ``step`` (0-based: steps done before it)."""
        length = self.steps if self.steps is not None else (self.epochs or 0) * steps_per_epoch
        t = (step - self.after * steps_per_epoch) / max(length, 1e-12)
        t = min(max(t, 0.0), 1.0)
        if self.shape == "cosine":
            t = (1 - math.cos(math.pi * t)) / 2
        return self.start + (self.end - self.start) * t


class TrainSpec(Strict):
    """Optimisation and execution settings."""

    optimizer: Name = Field("adam", description="adam, adamw, sgd, or a plugin's "
                            "(`aezoo list --components`)")
    optimizer_params: Params = Field(
        default_factory=dict, description="the optimiser's own hyperparameters, if any")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW only")
    eps: float = Field(1e-8, gt=0, description="Adam/AdamW epsilon (Keras uses 1e-7)")
    batch_size: PositiveInt = 256
    epochs: PositiveInt = 50
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    channels_last: bool | None = Field(
        None, description="NHWC memory layout; None picks the faster one for the device")
    # Schedules and controls (docs/training.md)
    scheduler: Name = Field("none", description="learning-rate schedule, stepped every "
                            "optimiser step: none, cosine, step, onecycle, or a plugin's")
    scheduler_params: Params = Field(
        default_factory=dict, description="the schedule's own hyperparameters, if any")
    warmup: int = Field(0, ge=0, le=MAX_COUNT,
                        description="linear warm-up steps (onecycle: its rise)")
    min_lr: float = Field(0.0, ge=0, description="cosine: the final learning rate")
    step_size: PositiveInt = Field(10, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor")
    grad_clip: float | None = Field(None, gt=0, description="max global gradient L2 norm")
    patience: PositiveInt | None = Field(
        None, description="early stopping: epochs without a better val_loss")
    min_delta: float = Field(0.0, ge=0, description="early stopping: smallest improvement")
    monitor: str = Field(
        "val_loss", min_length=1, description="the epoch value that picks best.safetensors "
        "and drives early stopping: val_loss, train_loss, val_TERM, train_TERM, val_METRIC "
        "(train.metrics) or a trainer.log name")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="whether lower (min) or higher (max) monitor values are better; "
        "auto: max for a val_METRIC whose metric is higher_is_better, else min")
    accumulate: PositiveInt = Field(
        1, description="optimiser steps take the gradients of this many batches (an effective "
        "batch of batch_size * accumulate)")
    ema: float | None = Field(
        None, gt=0, lt=1, description="decay of an exponential moving average of the weights "
        "(e.g. 0.999); when set it is validated, checkpointed and saved as the model")
    metrics: list[Name] = Field(
        default_factory=list, max_length=MAX_ITEMS,
        description="plugin metrics (aezoo.metrics) to add to each "
        "epoch's validation log, as val_NAME")
    anneal: dict[str, Anneal] = Field(
        default_factory=dict, description="term name -> a schedule of its weight (e.g. "
        "{'kl': {'epochs': 10}}: KL warm-up from 0 to its full weight over 10 epochs)")
    # Fine-tuning (docs/pretrained.md)
    init: str | None = Field(
        None, min_length=1, max_length=4096, description="start from these weights: a weight "
        "set VARIANT.TAG, hf://ORG/REPO[@REV], a run directory or a model file")
    init_strict: bool = Field(
        True, description="every tensor of init must match the model; false: load those "
        "that match and list the rest")
    # Input corruption (denoising): the encoder sees corrupt(x), the target stays x
    corrupt: ComponentSpec | None = Field(
        None, description="a transform (`aezoo list --components`) applied to training inputs")
    corrupt_val: bool = Field(
        True, description="corrupt validation inputs too (the same draw every epoch), so "
        "val_loss measures the task trained")
    # Speed switches
    precision: Literal["auto", "32", "bf16", "16"] = Field(
        "auto", description="auto, 32, bf16 or 16 (autocast; fp16 uses a GradScaler); auto: "
        "bf16 on CPUs with AMX (measured faster there), else 32")
    compile: bool = Field(False, description="torch.compile the training step")
    # How batches are read (docs/data.md, "How training reads data")
    reader: Literal["auto", "memory", "mapped", "stream"] = Field(
        "auto", description="memory: the split on the device; mapped: batches gathered from "
        "a memory map; stream: a DataLoader with workers; auto: memory where it fits "
        "memory_budget, else mapped (arrays) or stream (streamed sources)")
    workers: int | None = Field(
        None, ge=0, le=64, description="DataLoader worker processes (stream); None: up to 4")
    memory_budget: float | None = Field(
        None, gt=0, description="GB a split may take in memory for reader auto; None: half "
        "the available host (and device) memory")
    check_every: PositiveInt = Field(
        50, description="steps between NaN/stop checks where a check syncs (GPU, DDP)")
    # Run directory
    checkpoint_every: PositiveInt | None = Field(
        None, description="also checkpoint every N optimiser steps (resumable mid-epoch)")
    images: bool = Field(True, description="write a reconstruction grid each epoch")
    callbacks: list[Name] = Field(
        default_factory=list, max_length=MAX_ITEMS,
        description="extra callbacks by entry-point name")
    callback_params: dict[Name, Params] = Field(
        default_factory=dict, max_length=MAX_ITEMS,
        description="callback name (as in callbacks) -> its hyperparameters, validated by "
        "the callback (`aezoo info NAME`)")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in value):
            raise ValueError("each beta must be in [0, 1)")
        return value


class DataSpec(Strict):
    """Which dataset to train on, and how to shape and split it (docs/data.md)."""

    name: str = Field("mnist5k", min_length=1, max_length=MAX_PATH,
                      description="dataset (`aezoo data list`), or folder:PATH, npz:PATH, npy:PATH")
    limit: PositiveInt | None = Field(None, description="use at most N training images")
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of train held out for validation (stratified by "
        "label) when the dataset has no validation split")
    split_seed: int = Field(
        0, ge=0, le=MAX_SEED,
        description="seed of the validation split (fixed, independent of train.seed)")
    image_size: tuple[Side, Side] | None = Field(
        None, description="resize every image to (H, W); N or 'HxW' are accepted too")
    channels: Literal[1, 3] | None = Field(
        None, description="convert images to 1 (grey) or 3 (RGB) channels")
    skip_bad: bool = Field(
        False, description="streamed sources: skip unreadable images and count them instead "
        "of stopping on the first")
    params: Params = Field(
        default_factory=dict, description="the dataset's own hyperparameters, validated by "
        "its source (`aezoo info NAME`)")

    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            if len(parts) in (1, 2) and all(p.isdigit() for p in parts):
                value = [int(p) for p in parts]
            else:
                raise ValueError("write N or HxW, e.g. 32 or 64x48")
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        if isinstance(value, (list, tuple)) and len(value) == 1:
            return (value[0], value[0])
        return value


class RunSpec(Strict):
    """A complete training run: model, data and training settings."""

    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    data: DataSpec = Field(default_factory=DataSpec)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def short_repr(value: Any) -> str:
    """``repr`` bounded in time and size, whatever the value (a YAML alias bomb, a
    5,000-digit integer): at most about 80 characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {value.bit_length() * 30103 // 100000} digits"  # log10(2)
    try:
        text = _SHORT.repr(value)
    except (ValueError, RecursionError):  # e.g. int -> str beyond the digit limit
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``, or [] where it is not a model."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _loc_part(part: Any) -> str:
    """One part of an error's location, bounded: an unknown key may be 50 MB long."""
    text = str(part) if not isinstance(part, str) else part
    return text if len(text) <= 60 else f"{text[:40]}...({len(text):,} characters)"


def _first_error(error: ValidationError) -> Any:
    """The first error, without the input values (rendering them is what costs)."""
    return error.errors(include_url=False, include_context=False)[0]


def error_key(error: ValidationError, prefix: str = "") -> str:
    """The dotted path of the first invalid value (``train.lr``), or ""."""
    return ".".join(_loc_part(p) for p in (prefix, *_first_error(error)["loc"]) if p != "")


def describe_validation_error(error: ValidationError, prefix: str = "",
                              model: type[BaseModel] | None = None) -> str:
    """One line naming the first invalid value and why (bounded in size and time)."""
    first = _first_error(error)
    loc = error_key(error, prefix)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
        known = _fields_at(model, tuple(first["loc"][:-1])) if model else []
        typed = str(first["loc"][-1])
        close = difflib.get_close_matches(typed, known, n=1) if len(typed) <= 100 else []
        if close:
            message += f" (did you mean '{close[0]}'?)"
    elif first["type"] != "missing":
        message += f" (got {short_repr(first.get('input'))})"  # one short line
    more = error.error_count() - 1
    tail = f" (and {more} more)" if more else ""
    return f"invalid {loc or 'spec'}: {message}{tail}"


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """``model.model_validate`` with a one-line SpecError instead of ValidationError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        key = error_key(exc, prefix)
        where = ("`aezoo info`" if key.startswith("model.") or not key
                 else "`aezoo config VARIANT` (every key, with its value) or docs/specs.md")
        raise SpecError(describe_validation_error(exc, prefix, model),
                        f"fix the value or see {where}", key=key or None) from None

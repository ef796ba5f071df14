"""Using a trained model on a dataset split: load both (``load_split``), measure it
(``evaluate``), encode the split to latents (``encode_split``, ``write_latents``).

What ``aezoo eval``, ``aezoo encode`` and ``aezoo reconstruct`` compute; pictures of
reconstructions come from ``aezoo.viz``.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aezoo._io import atomic_write, atomic_write_many
from aezoo.errors import AezooWarning, OutputExistsError, ShapeError, SpecError, UsageError
from aezoo.metrics import SSIM_WINDOW, bce_with_logits, mse, psnr, ssim
from aezoo.protocols import format_shape
from aezoo.specs import ComponentSpec
from aezoo.tensors import unit_batches

__all__ = ["LATENT_SUFFIXES", "SPLITS", "Evaluation", "Loaded", "check_picture_path",
           "encode_split", "evaluate", "labels_path", "latents_format", "load_split",
           "model_split",
           "refuse_overwrite", "write_latents", "write_npy"]

SPLITS = ("test", "val", "train")


@dataclass
class Loaded:
    """A model on its device and the uint8 images of one split."""

    model: Any
    path: Path
    data_name: str
    split: str
    images: Any  # torch.Tensor (N, C, H, W) uint8 on the model's device
    labels: Any  # numpy array or None
    memory_format: Any
    class_names: list[str] | None = None  # class_names[k] names label k, where known


def load_split(target: str | Path, data: str | None = None, split: str | None = None,
               limit: int | None = None, device: str = "auto") -> Loaded:
    """The model (a file, a run directory, a weight set or ``hf://`` repo: see
    ``aezoo.pretrained.locate``) and the images it should see, checked for a matching
    shape. ``data`` defaults to the run's (or weight set's) dataset, ``split`` to test
    (else val). What ``aezoo eval`` uses; a plugin's command uses it the same way."""
    from aezoo.checkpoint import load
    from aezoo.device import resolve_device
    from aezoo.pretrained import locate
    from aezoo.rundir import data_spec_beside

    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split '{split}'", "use test, val or train")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be positive (got {limit})", "pass --limit 1 or more")
    dev = resolve_device(device)
    # A path that is not there is a usage error (exit code 2), as for `train --resume`; a
    # file that is there but broken stays a CheckpointError.
    located = locate(target)
    path = located.path
    model = load(path, device=dev)
    data_spec = data_spec_beside(path, data)
    if data is None and located.weight_set is not None:  # the data its recipe names
        data_spec = _recipe_data(located.weight_set.recipe, located.weight_set.dataset)
    return model_split(model, path, data_spec, split, limit, dev)


def model_split(model: Any, path: Path, data_spec: Any, split: str | None,
                limit: int | None, dev: torch.device) -> Loaded:
    """``model`` (on ``dev``, known as ``path``) with the images of one split of
    ``data_spec``, checked for a matching shape."""
    from aezoo.data import load_dataset
    from aezoo.data.streamed import as_array
    from aezoo.tensors import preferred_memory_format

    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split '{split}'", "use test, val or train")
    dataset = load_dataset(data_spec)
    test = getattr(dataset, "test", None)
    split = split or ("test" if test is not None else "val")
    if split == "test" and test is None:
        raise UsageError(f"dataset {dataset.name} has no test split", "use --split val")
    arrays: dict[str, tuple[Any, Any]] = {
        "train": (dataset.train, dataset.train_labels),
        "val": (dataset.val, dataset.val_labels),
        "test": (test, getattr(dataset, "test_labels", None))}
    images, labels = arrays[split]
    images = as_array(images, limit)  # mapped or streamed splits are read here, once
    if limit is not None:
        labels = None if labels is None else labels[:limit]
    shape = tuple(images.shape[1:])
    if shape != tuple(model.input_shape):
        raise ShapeError(f"{path} expects {format_shape(model.input_shape)} images, "
                         f"dataset {dataset.name} has {format_shape(shape)}",
                         "pass the --data the model was trained on")
    memory_format = preferred_memory_format(dev)
    model.to(memory_format=memory_format)  # type: ignore[call-overload]
    tensor = torch.from_numpy(images.copy()).to(dev)
    return Loaded(model, path, dataset.name, split, tensor, labels, memory_format,
                  getattr(dataset, "class_names", None))


def _recipe_data(recipe: dict[str, Any], dataset: str) -> Any:
    from aezoo.specs import DataSpec

    try:
        return DataSpec.model_validate(recipe.get("data") or {"name": dataset})
    except ValueError:  # pydantic's ValidationError: a card from another aezoo version
        return DataSpec(name=dataset)


def refuse_overwrite(path: Path, force: bool) -> None:
    """An existing output is kept unless ``force``."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists", "choose another --out, or pass --force")


# --- metrics ------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Mean metrics of a model over a split (one JSON object for ``aezoo eval --json``).

    Reconstructions are compared with the clean images. With ``corrupt`` the encoder saw
    corrupted ones, and ``input_psnr`` is the PSNR of those against the clean images: the
    gain ``psnr - input_psnr`` is what denoising achieved. ``loss`` is the objective's
    total (None when its loss plugin is not installed), ``terms`` its named terms when it
    has several, ``metrics`` every installed plugin metric (``aezoo.metrics``)."""

    images: int
    mse: float
    bce: float
    psnr: float
    ssim: float | None  # None: the images are smaller than SSIM's window (see ``notes``)
    loss: float | None
    images_per_s: float
    params: int
    notes: tuple[str, ...] = ()  # why a metric is missing
    terms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    corrupt: str | None = None
    input_psnr: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The metrics (optional parts only when present)."""
        out = asdict(self)
        out["notes"] = list(self.notes)
        for key in ("notes", "terms", "metrics", "corrupt", "input_psnr"):
            if not out[key] and out[key] != 0.0:
                del out[key]
        return out


@dataclass(frozen=True)
class _Metric:
    name: str  # as the user types it (DIST:NAME when ambiguous)
    origin: str  # "DIST VERSION", for messages
    descriptor: Any
    chosen: bool  # named by the caller: a failure is an error, not a warning


def _plugin_metrics(names: Sequence[str] | None) -> list[_Metric]:
    """Every installed metric (``names`` None), or those named (unknown: an error)."""
    from aezoo import registry

    if names is None:
        return [_Metric(registry.display_name(e), f"{e.dist} {e.version}", desc, False)
                for e, desc in registry.load_all("metric")]
    out = []
    for name in dict.fromkeys(names):
        entry = registry.find("metric", name)
        out.append(_Metric(registry.display_name(entry), f"{entry.dist} {entry.version}",
                           registry.load("metric", name), True))
    return out


def _metric_failed(metric: _Metric, exc: Exception) -> str:
    """One line about a metric that raised; an error when the caller chose it."""
    from aezoo.errors import AezooError, PluginError, summary

    why = exc.problem if isinstance(exc, AezooError) else summary(exc)
    if metric.chosen:
        raise PluginError(f"metric '{metric.name}' (plugin {metric.origin}) failed: {why}",
                          f"leave out --metric {metric.name}, or report it to the plugin's "
                          "authors") from exc
    note = f"metric '{metric.name}' (plugin {metric.origin}) failed and is left out: {why}"
    warnings.warn(AezooWarning(note), stacklevel=3)
    return note


@torch.no_grad()
def evaluate(model: Any, images: torch.Tensor, batch_size: int = 1024,
             memory_format: torch.memory_format = torch.contiguous_format,
             corrupt: ComponentSpec | None = None, seed: int = 0,
             metrics: Sequence[str] | None = None) -> Evaluation:
    """Metrics of ``model`` on uint8 ``images`` (already on the model's device).

    ``metrics``: the plugin metrics (``aezoo.metrics``) to compute, by name; None: every
    installed one. A metric that raises is left out with an ``AezooWarning`` naming its
    plugin (an error when it was named in ``metrics``); the others go on.

    ``corrupt``: a transform applied to the inputs (drawn from a generator seeded with
    ``seed``: the same numbers each time). images/s times the model's forward pass alone
    (encode + decode), after one warm-up batch, with a device sync before reading the clock.
    """
    from aezoo.objective import UnavailableLoss, build_transform, metric_values, total

    if len(images) == 0:
        raise ShapeError("no images to evaluate", "choose a split that has images")
    model.eval()
    device = images.device
    transform = build_transform(corrupt) if corrupt is not None else None
    generator = torch.Generator(device=device).manual_seed(seed)
    plugin_metrics = _plugin_metrics(metrics)
    failed: list[str] = []  # notes on the metrics that raised (left out)
    with_loss = not isinstance(model.loss_fn, UnavailableLoss)
    names = list(model.term_names) if len(model.term_names) > 1 else []
    keys = ["mse", "bce", "psnr", "ssim", "loss", "input_psnr", *(f"term:{n}" for n in names),
            *(f"metric:{m.name}" for m in plugin_metrics)]
    sums = {k: torch.zeros((), dtype=torch.float64, device=device) for k in keys}
    # SSIM's 11x11 window does not fit smaller images: no SSIM then, the rest as usual.
    with_ssim = min(images.shape[-2:]) >= SSIM_WINDOW
    forward_seconds = 0.0
    _sync(device)
    for i, x in enumerate(unit_batches(images, batch_size, memory_format)):
        x_in = transform(x, generator) if transform is not None else x
        if i:  # the first batch warms up
            _sync(device)
        start = time.perf_counter()
        fwd = model.forward_pass(x_in, x)
        if i:
            _sync(device)
            forward_seconds += time.perf_counter() - start
        logits = fwd.logits
        recon = torch.sigmoid(logits)
        sums["mse"] += mse(recon, x).sum()
        sums["bce"] += bce_with_logits(logits, x).sum()
        sums["psnr"] += psnr(recon, x).sum()
        if transform is not None:
            sums["input_psnr"] += psnr(x_in, x).sum()
        if with_ssim:
            sums["ssim"] += ssim(recon, x).sum()
        if with_loss:
            terms = model.objective(fwd, model.loss_fn)
            sums["loss"] += total(terms).double() * len(x)
            for n in names:
                sums[f"term:{n}"] += terms[n].double() * len(x)
        for m in list(plugin_metrics):
            try:
                values = metric_values(m.descriptor, fwd, recon)
                sums[f"metric:{m.name}"] += values.double().sum()
            except Exception as exc:  # a plugin's bug: that metric is out, the rest go on
                failed.append(_metric_failed(m, exc))
                plugin_metrics.remove(m)
    timed = len(images) - min(batch_size, len(images))
    if timed == 0:  # one batch only: time it again, warm
        _sync(device)
        start = time.perf_counter()
        model.forward_pass(x_in, x)
        _sync(device)
        forward_seconds, timed = time.perf_counter() - start, len(x)
    means: dict[str, Any] = {k: float(v) / len(images) for k, v in sums.items()}
    notes: list[str] = []
    if not with_ssim:
        h, w = images.shape[-2:]
        means["ssim"] = None
        notes.append(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} (its window), "
                     f"these are {h}x{w}")
    if not with_loss:
        means["loss"] = None
        notes.append(f"loss '{model.spec.loss.name}' is not installed: no loss value")
    notes += failed
    speed = timed / max(forward_seconds, 1e-9)
    return Evaluation(
        images=len(images), mse=means["mse"], bce=means["bce"], psnr=means["psnr"],
        ssim=means["ssim"], loss=means["loss"], images_per_s=speed,
        params=sum(p.numel() for p in model.parameters()), notes=tuple(notes),
        terms={n: means[f"term:{n}"] for n in names},
        metrics={m.name: means[f"metric:{m.name}"] for m in plugin_metrics},
        corrupt=corrupt.name if corrupt is not None else None,
        input_psnr=means["input_psnr"] if transform is not None else None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --- latents ------------------------------------------------------------------------


ENCODE_OUTPUTS = ("mean", "logvar", "sample")  # and any extra the encoder returns by name


@torch.no_grad()
def encode_split(model: Any, images: torch.Tensor, batch_size: int = 1024,
                 memory_format: torch.memory_format | None = None,
                 flatten: bool = False, output: str = "mean", seed: int = 0) -> np.ndarray:
    """The float32 latents of uint8 ``images``: ``(N, C, H, W)``, or ``(N, C*H*W)`` with
    ``flatten``. ``output``: the code (``mean``: a stochastic encoder's mean), its
    ``logvar``, a ``sample`` drawn with the reparameterisation trick (from ``seed``), or
    any other tensor the encoder returns by name (a VQ encoder's codebook ``indices``),
    in its own dtype."""
    from aezoo.model import sample_latent
    from aezoo.protocols import LOGVAR

    if output in ("logvar", "sample") and not getattr(model, "stochastic", False):
        raise UsageError(f"--output {output} needs a stochastic encoder (a VAE's); "
                         f"{model.spec.encoder.name} returns a plain code",
                         "use --output mean (the default)")
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    parts = []
    for x in unit_batches(images, batch_size, memory_format):
        code, extras = model.encode_parts(x)
        if output == "logvar":
            code = extras[LOGVAR]
        elif output == "sample":
            noise = torch.randn(code.shape, generator=generator).to(code.device)
            code = sample_latent(extras, noise)
        elif output != "mean":
            code = _extra(model, extras, output)
        parts.append((code.float() if code.is_floating_point() else code).cpu())
    latents: np.ndarray = torch.cat(parts).contiguous().numpy()
    return latents.reshape(len(latents), -1) if flatten else latents


def _extra(model: Any, extras: dict[str, Any], name: str) -> torch.Tensor:
    """The encoder's extra ``name`` (one row per image), or a one-line UsageError."""
    value = extras.get(name)
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        known = ", ".join(["mean", *(k for k, v in extras.items()
                                     if isinstance(v, torch.Tensor) and v.dim() > 0)])
        raise UsageError(f"unknown --output '{name[:60]}': {model.spec.encoder.name} returns "
                         f"no tensor of that name", f"use one of: {known}")
    return value


def corruption(name: str, model_file: Path) -> ComponentSpec:
    """The transform ``name`` with the params the run beside ``model_file`` trained with
    (when it trained with that transform), else its defaults; resolved and validated."""
    from aezoo.config import part_params
    from aezoo.rundir import RUN_FILE, read_run_spec

    params: dict[str, Any] = {}
    run_file = model_file.parent / RUN_FILE
    from_run = False
    if run_file.exists():
        try:
            trained = read_run_spec(model_file.parent).train.corrupt
        except UsageError:
            trained = None
        if trained is not None and trained.name == name:
            params, from_run = dict(trained.params), True
    if not from_run:
        typed = part_params("transform", name, params, "--corrupt")
    else:  # a bad value came from the run, not from the flag: name where it is
        try:
            typed = part_params("transform", name, params, "train.corrupt.params")
        except SpecError as exc:
            raise UsageError(f"{run_file} holds {exc.problem}",
                             f"fix train.corrupt in {run_file}") from None
    return ComponentSpec(name=name, params=typed.model_dump(mode="json"))


def corrupted_reconstructions(model: Any, images: torch.Tensor, spec: ComponentSpec,
                              memory_format: torch.memory_format | None = None, seed: int = 0
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted inputs, their reconstructions) of uint8 ``images``, both uint8."""
    from aezoo.objective import build_transform
    from aezoo.tensors import to_uint8, to_unit

    transform = build_transform(spec)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        noisy = transform(to_unit(images, memory_format), generator)
        recon = model(noisy)
    model.train(was_training)
    return to_uint8(noisy), to_uint8(recon)


LATENT_SUFFIXES = (".npy", ".npz")


def latents_format(out: Path) -> str:
    """``npy`` or ``npz``, from ``out``'s extension; any other is refused (before anything
    loads), so a file's bytes always match its name."""
    suffix = out.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise UsageError(f"cannot write latents to {out} (unknown extension "
                         f"'{suffix or out.name}')",
                         "use --out NAME.npy (latents, labels beside it) or NAME.npz (both "
                         "in one file)")
    return suffix[1:]


def check_picture_path(out: Path) -> None:
    """``reconstruct`` writes PNG: any other extension is refused, never written as PNG."""
    if out.suffix.lower() != ".png":
        raise UsageError(f"cannot write a reconstruction grid to {out} (PNG only, not "
                         f"'{out.suffix or out.name}')", "use --out NAME.png")


def labels_path(out: Path) -> Path | None:
    """Where the labels of the latents in ``out`` go: ``NAME.labels.npy`` beside a .npy
    file; None for a .npz file (they go inside it, as ``labels``)."""
    if latents_format(out) == "npz":
        return None
    return out.with_name(out.name.removesuffix(out.suffix) + ".labels.npy")


def write_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as a .npy file (no pickles), written atomically."""
    atomic_write(path, _npy(array))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_latents(out: Path, latents: np.ndarray, labels: Any = None,
                  class_names: list[str] | None = None) -> Path | None:
    """``latents`` to ``out`` and, when given, ``labels`` (int64, row i labelling latent i).

    ``.npy``: the labels go to ``labels_path(out)``, which is returned (None without
    labels). ``.npz``: one file with arrays ``latents`` and (when given) ``labels`` and
    ``class_names`` (strings: label k names class_names[k]); returns None."""
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    if latents_format(out) == "npz":
        buf = io.BytesIO()
        arrays = {"latents": latents, **({"labels": labels} if labels is not None else {})}
        if labels is not None and class_names:
            arrays["class_names"] = np.array(class_names, dtype=str)
        # Plain numeric and string arrays: nothing to pickle. (No allow_pickle=: numpy
        # before 2.2 would store it as one more array.)
        np.savez(buf, **arrays)
        atomic_write(out, buf.getvalue())
        return None
    where = labels_path(out)
    if labels is None or where is None:
        write_npy(out, latents)
        if where is not None:  # an earlier encode's labels would label these latents
            where.unlink(missing_ok=True)
        return None
    atomic_write_many([(out, _npy(latents)), (where, _npy(labels))])  # one set: both new
    return where

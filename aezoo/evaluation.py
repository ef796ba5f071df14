"""A model's mean metrics over a split: ``evaluate``, what ``aezoo eval`` reports.

The built-in metrics (``aezoo.metrics.BUILTIN``) and the plugins' (``aezoo.metrics``
entry points) are descriptors computed the same way, per batch; a plugin's that raises
is left out with a warning. ``load_split`` and ``Loaded`` (``aezoo.loaded``) are here
too, where plugins' commands import them from (docs/plugins.md).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from aezoo.errors import AezooError, AezooWarning, PluginError, ShapeError, summary
from aezoo.loaded import Loaded, load_split
from aezoo.metrics import BUILTIN, SSIM_WINDOW
from aezoo.specs import ComponentSpec
from aezoo.tensors import evaluating, unit_batches

__all__ = ["Evaluation", "Loaded", "evaluate", "load_split"]


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
    key: str  # of its sum: a built-in's name, a plugin's metric:NAME
    descriptor: Any
    origin: str | None = None  # a plugin's "DIST VERSION", for messages; None: built in
    chosen: bool = False  # named by the caller: a failure is an error, not a warning


def _metrics(names: Sequence[str] | None, with_ssim: bool, corrupted: bool) -> list[_Metric]:
    """The built-in metrics that apply, then every installed plugin metric (``names``
    None) or those named (unknown: an error)."""
    from aezoo import registry

    skip = {"ssim"} if not with_ssim else set()
    skip |= {"input_psnr"} if not corrupted else set()
    out = [_Metric(n, n, d) for n, d in BUILTIN.items() if n not in skip]
    if names is None:
        loaded = [(e, desc, False) for e, desc in registry.load_all("metric")]
    else:
        loaded = [(registry.find("metric", n), registry.load("metric", n), True)
                  for n in dict.fromkeys(names)]
    return out + [_Metric(registry.display_name(e), f"metric:{registry.display_name(e)}",
                          desc, f"{e.dist} {e.version}", chosen) for e, desc, chosen in loaded]


def _metric_failed(metric: _Metric, exc: Exception) -> str:
    """One line about a plugin's metric that raised; an error when the caller chose it."""
    why = exc.problem if isinstance(exc, AezooError) else summary(exc)
    if metric.chosen:
        raise PluginError(f"metric '{metric.name}' (plugin {metric.origin}) failed: {why}",
                          f"leave out --metric {metric.name}, or report it to the plugin's "
                          "authors") from exc
    note = f"metric '{metric.name}' (plugin {metric.origin}) failed and is left out: {why}"
    warnings.warn(AezooWarning(note), stacklevel=3)
    return note


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
    with evaluating(model):
        device = images.device
        transform = build_transform(corrupt) if corrupt is not None else None
        generator = torch.Generator(device=device).manual_seed(seed)
        # SSIM's 11x11 window does not fit smaller images: no SSIM then, the rest as usual.
        with_ssim = min(images.shape[-2:]) >= SSIM_WINDOW
        measured = _metrics(metrics, with_ssim, transform is not None)
        failed: list[str] = []  # notes on the metrics that raised (left out)
        with_loss = not isinstance(model.loss_fn, UnavailableLoss)
        names = list(model.term_names) if len(model.term_names) > 1 else []
        keys = [*(m.key for m in measured), "loss", *(f"term:{n}" for n in names)]
        sums = {k: torch.zeros((), dtype=torch.float64, device=device) for k in keys}
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
            recon = torch.sigmoid(fwd.logits)
            if with_loss:
                terms = model.objective(fwd, model.loss_fn)
                sums["loss"] += total(terms).double() * len(x)
                for n in names:
                    sums[f"term:{n}"] += terms[n].double() * len(x)
            for m in list(measured):
                try:
                    sums[m.key] += metric_values(m.descriptor, fwd, recon).double().sum()
                except Exception as exc:  # a plugin's bug: that metric is out, the rest go on
                    if m.origin is None:  # a built-in's is aezoo's: not hidden
                        raise
                    failed.append(_metric_failed(m, exc))
                    measured.remove(m)
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
        notes.append(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} (its window), "
                     f"these are {h}x{w}")
    if not with_loss:
        means["loss"] = None
        notes.append(f"loss '{model.spec.loss.name}' is not installed: no loss value")
    notes += failed
    speed = timed / max(forward_seconds, 1e-9)
    return Evaluation(
        images=len(images), mse=means["mse"], bce=means["bce"], psnr=means["psnr"],
        ssim=means.get("ssim"), loss=means["loss"], images_per_s=speed,
        params=sum(p.numel() for p in model.parameters()), notes=tuple(notes),
        terms={n: means[f"term:{n}"] for n in names},
        metrics={m.name: means[m.key] for m in measured if m.origin is not None},
        corrupt=corrupt.name if corrupt is not None else None,
        input_psnr=means.get("input_psnr"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


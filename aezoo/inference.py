"""The batch inference API: images as numpy arrays or tensors in, latents, reconstructions
or per-image scores out (``Autoencoder.encode``, ``.reconstruct``, ``.score``).

Inputs are uint8 (0..255) or floats in [0, 1], shaped ``(N, C, H, W)``, ``(N, H, W, C)``
or, for one-channel models, ``(N, H, W)``. The layout is decided by matching the model's
``input_shape`` ``(C, H, W)``: ``(N, C, H, W)`` is NCHW, ``(N, H, W, C)`` is NHWC; when
both match (``C == H == W``, e.g. 3x3x3 images) NCHW wins unless ``layout="nhwc"``.
Images go to the device one batch at a time (``batch_size``), in eval mode and without
gradients; the output array is allocated once, so memory is the output plus one batch.
Outputs are numpy for numpy inputs and torch for tensors (on the input's device), unless
``output`` says otherwise. The model is duck-typed (``encode_parts``, ``decode_logits``,
``input_shape``), so this layer sits below ``aezoo.model``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from aezoo.errors import ShapeError, UsageError
from aezoo.metrics import SSIM_WINDOW, bce_with_logits, mse, ssim
from aezoo.tensors import evaluating

__all__ = ["DEFAULT_BATCH", "LAYOUTS", "METRICS", "OUTPUTS", "Images", "default_metric",
           "encode", "layout_of", "reconstruct", "score"]

DEFAULT_BATCH = 256
LAYOUTS = ("auto", "nchw", "nhwc")
OUTPUTS = ("numpy", "torch")
METRICS = ("mse", "bce", "ssim")
_FLOAT_SLACK = 1e-6  # floats a hair outside [0, 1] (rounding) are accepted and clamped


class Images:
    """A checked view of the caller's images: layout, kind and where outputs go."""

    def __init__(self, images: Any, shape: tuple[int, int, int], layout: str = "auto",
                 output: str | None = None) -> None:
        if layout not in LAYOUTS:
            raise UsageError(f"unknown layout '{layout}'", "use auto, nchw or nhwc")
        if output is not None and output not in OUTPUTS:
            raise UsageError(f"unknown output '{output}'", "use numpy or torch")
        self.is_tensor = isinstance(images, torch.Tensor)
        data = images if self.is_tensor else np.asarray(images)
        dtype = str(data.dtype).removeprefix("torch.")
        if dtype != "uint8" and not dtype.startswith(("float", "bfloat")):
            raise UsageError(f"images of dtype {dtype} cannot be read",
                             "pass uint8 images (0..255) or floats in [0, 1]")
        self.data = data
        self.uint8 = dtype == "uint8"
        self.layout = layout_of(tuple(data.shape), shape, layout)
        self.output = output or ("torch" if self.is_tensor else "numpy")
        self.out_device = (data.device if self.is_tensor and self.output == "torch"
                           else torch.device("cpu"))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def batches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Float32 ``(n, C, H, W)`` batches in [0, 1] on ``device``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise UsageError(f"batch_size must be a whole number (got {batch_size!r})",
                             "pass batch_size=1 or more")
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive (got {batch_size})",
                             "pass batch_size=1 or more")
        batch_size = int(batch_size)
        for start in range(0, len(self), batch_size):
            part: Any = self.data[start:start + batch_size]
            if not self.is_tensor:  # a copy of one batch at most (read-only or strided input)
                part = torch.from_numpy(np.array(part) if not part.flags.writeable
                                        else np.ascontiguousarray(part))
            x = part.to(device)
            if self.layout == "nhw":
                x = x.unsqueeze(1)
            elif self.layout == "nhwc":
                x = x.permute(0, 3, 1, 2)
            if self.uint8:
                yield x.to(torch.float32).div_(255).contiguous()
                continue
            x = x.to(torch.float32).contiguous()
            low, high = torch.aminmax(x)
            if not (low >= -_FLOAT_SLACK and high <= 1 + _FLOAT_SLACK):  # NaN fails too
                raise UsageError(f"images hold floats from {float(low):g} to {float(high):g}; "
                                 "floats must lie in [0, 1]",
                                 "divide by 255 (8-bit data), or pass uint8 images")
            yield x.clamp_(0, 1)


def layout_of(shape: tuple[int, ...], spec: tuple[int, int, int], layout: str = "auto"
              ) -> str:
    """``nchw``, ``nhwc`` or ``nhw`` for a batch of ``shape`` given the model's ``(C, H, W)``;
    a ShapeError naming the shapes the model takes otherwise."""
    c, h, w = spec
    nchw, nhwc = tuple(shape[1:]) == (c, h, w), tuple(shape[1:]) == (h, w, c)
    if len(shape) == 4 and layout in ("auto", "nchw") and nchw:
        return "nchw"
    if len(shape) == 4 and layout in ("auto", "nhwc") and nhwc:
        return "nhwc"
    if len(shape) == 3 and c == 1 and tuple(shape[1:]) == (h, w) and layout == "auto":
        return "nhw"
    takes = {"auto": f"(N, {c}, {h}, {w}) or (N, {h}, {w}, {c})",
             "nchw": f"(N, {c}, {h}, {w})", "nhwc": f"(N, {h}, {w}, {c})"}[layout]
    if layout == "auto" and c == 1:
        takes += f" or (N, {h}, {w})"
    raise ShapeError(f"this model takes {takes} images, got {tuple(shape)}",
                     "pass images of the model's input_shape, or build the model for "
                     "yours: aezoo.build(NAME, input_shape=...)")


def codes(model: Any, z: Any) -> torch.Tensor:
    """``z`` as codes the decoder takes: a float tensor as is; a numpy array as a tensor on
    the model's device and dtype. Another type, a non-float dtype or another shape than
    ``(N, *model.latent_shape)`` is a UsageError / ShapeError, never a raw torch error."""
    latent = tuple(model.latent_shape)
    expected = f"(N, {', '.join(map(str, latent))})"
    if isinstance(z, np.ndarray):
        if z.dtype.kind != "f":
            raise UsageError(f"codes of dtype {z.dtype} cannot be decoded",
                             "pass float codes (what model.encode returns)")
        param = next(model.parameters(), None)
        t = torch.from_numpy(np.ascontiguousarray(z)).to(
            param.device if param is not None else "cpu",
            param.dtype if param is not None else torch.float32)
    elif isinstance(z, torch.Tensor):
        if not z.is_floating_point():
            raise UsageError(f"codes of dtype {str(z.dtype).removeprefix('torch.')} cannot be "
                             "decoded", "pass float codes (what model.encode returns)")
        t = z
    else:
        raise UsageError(f"this model decodes a tensor or numpy array of {expected} codes, "
                         f"got a {type(z).__name__}", "pass what model.encode returns")
    if t.dim() != 4 or tuple(t.shape[1:]) != latent:
        raise ShapeError(f"this model decodes {expected} codes, got {tuple(t.shape)}",
                         "pass codes of model.latent_shape (what model.encode returns)")
    return t


def _run(model: Any, view: Images, batch_size: int | None, device: Any,
         out_shape: tuple[int, ...], dtype: torch.dtype,
         step: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``step`` over every batch, the results written into one preallocated output."""
    dev = _device(model, device)
    result = torch.empty(out_shape, dtype=dtype, device=view.out_device)
    with evaluating(model):
        start = 0
        for x in view.batches(DEFAULT_BATCH if batch_size is None else batch_size, dev):
            y = step(x)
            result[start:start + len(y)] = y.to(result.device, dtype)
            start += len(y)
    return result if view.output == "torch" else result.numpy()


def _device(model: Any, device: Any) -> torch.device:
    """``device`` (a name or torch.device; None: where the model is); the model moves there."""
    from aezoo.device import resolve_device

    if device is None:
        return next((p.device for p in model.parameters()), torch.device("cpu"))
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    model.to(dev)
    return dev


def encode(model: Any, images: Any, *, batch_size: int | None = None, device: Any = None,
           output: str | None = None, layout: str = "auto") -> Any:
    """Float32 codes ``(N, *model.latent_shape)`` (a stochastic encoder's mean)."""
    view = Images(images, tuple(model.input_shape), layout, output)
    return _run(model, view, batch_size, device, (len(view), *model.latent_shape),
                torch.float32, lambda x: model.encode_parts(x)[0])


def reconstruct(model: Any, images: Any, *, batch_size: int | None = None, device: Any = None,
                output: str | None = None, layout: str = "auto") -> Any:
    """Float32 reconstructions in [0, 1], in the layout (and shape) of ``images``."""
    view = Images(images, tuple(model.input_shape), layout, output)

    def step(x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(model.decode_logits(model.encode_parts(x)[0]))
        return {"nchw": y, "nhwc": y.permute(0, 2, 3, 1), "nhw": y[:, 0]}[view.layout]

    return _run(model, view, batch_size, device, tuple(view.data.shape), torch.float32, step)


def default_metric(model: Any) -> str:
    """The model's own loss where it is ``bce`` or ``mse``, else ``mse``."""
    name = str(model.spec.loss.name)
    return name if name in ("bce", "mse") else "mse"


def score(model: Any, images: Any, metric: str | None = None, *,
          batch_size: int | None = None, device: Any = None, output: str | None = None,
          layout: str = "auto") -> Any:
    """Per-image reconstruction error, float64 ``(N,)``: higher is worse. ``bce`` and
    ``mse`` are the per-image values ``aezoo eval`` averages; ``ssim`` scores ``1 - SSIM``;
    default: :func:`default_metric`."""
    metric = metric or default_metric(model)
    if metric not in METRICS:
        raise UsageError(f"unknown metric '{metric}'", "use mse, bce or ssim")
    c, h, w = tuple(model.input_shape)
    if metric == "ssim" and min(h, w) < SSIM_WINDOW:
        raise UsageError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, this "
                         f"model takes {h}x{w}", "score with mse or bce")

    def step(x: torch.Tensor) -> torch.Tensor:
        logits = model.decode_logits(model.encode_parts(x)[0])
        if metric == "bce":
            return bce_with_logits(logits, x)
        recon = torch.sigmoid(logits)
        return mse(recon, x) if metric == "mse" else 1 - ssim(recon, x)

    view = Images(images, tuple(model.input_shape), layout, output)
    return _run(model, view, batch_size, device, (len(view),), torch.float64, step)

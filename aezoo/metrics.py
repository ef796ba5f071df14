"""Reconstruction metrics on image batches ``(N, C, H, W)`` in [0, 1], and model evaluation.

Each metric is computed per image, then averaged over the batch:

- ``mse``: mean squared error;
- ``bce``: binary cross-entropy of the reconstruction (from logits where available);
- ``psnr``: ``10 log10(1 / mse)`` dB, with the MSE floored at 1e-10 (so at most 100 dB);
- ``ssim``: Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, data range 1, population (not sample) statistics, averaged over the "valid"
  positions (no padding) and over channels — the reference MATLAB ``ssim_index``, and
  scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from aezoo.errors import ShapeError
from aezoo.tensors import to_unit

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MSE_FLOOR = 1e-10


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(1)


def mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error, shape (N,)."""
    return _per_image((recon.double() - target.double()) ** 2)


def bce(recon: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-image binary cross-entropy of probabilities ``recon`` (clamped to [eps, 1-eps])."""
    p = recon.double().clamp(eps, 1 - eps)
    t = target.double()
    return _per_image(-(t * p.log() + (1 - t) * (1 - p).log()))


def bce_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image binary cross-entropy from logits (stable for any logit)."""
    return _per_image(F.binary_cross_entropy_with_logits(logits.double(), target.double(),
                                                         reduction="none"))


def psnr(recon: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio in dB."""
    return 10 * torch.log10(data_range ** 2 / mse(recon, target).clamp_min(MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian the 2-D window is the outer product of."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(recon: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004), shape (N,); see the module docstring."""
    if recon.shape != target.shape or recon.dim() != 4:
        raise ShapeError(f"ssim needs two (N, C, H, W) batches of one shape, got "
                         f"{tuple(recon.shape)} and {tuple(target.shape)}", "pass matching images")
    n, c, h, w = recon.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ShapeError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}",
                         "use larger images")
    x, y = recon.double(), target.double()
    g = gaussian_window().to(x.device)
    rows = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    cols = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable 11x11 Gaussian, 'valid'
        return F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
                / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return _per_image(ssim_map)


@dataclass(frozen=True)
class Evaluation:
    """Mean metrics of a model over a split (one JSON object for ``aezoo eval --json``)."""

    images: int
    mse: float
    bce: float
    psnr: float
    ssim: float
    loss: float
    images_per_s: float
    params: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate(model: Any, images: torch.Tensor, batch_size: int = 1024,
             memory_format: torch.memory_format = torch.contiguous_format) -> Evaluation:
    """Metrics of ``model`` on uint8 ``images`` (already on the model's device).

    images/s times the model's forward pass alone (encode + decode), after one warm-up
    batch, with a device sync before reading the clock.
    """
    if len(images) == 0:
        raise ShapeError("no images to evaluate", "choose a split that has images")
    model.eval()
    device = images.device
    sums = {k: torch.zeros((), dtype=torch.float64, device=device)
            for k in ("mse", "bce", "psnr", "ssim", "loss")}
    forward_seconds = 0.0
    _sync(device)
    for s in range(0, len(images), batch_size):
        x = to_unit(images[s:s + batch_size], memory_format)
        if s:  # the first batch warms up
            _sync(device)
        start = time.perf_counter()
        logits = model.decode_logits(model.encode(x))
        if s:
            _sync(device)
            forward_seconds += time.perf_counter() - start
        recon = torch.sigmoid(logits)
        sums["mse"] += mse(recon, x).sum()
        sums["bce"] += bce_with_logits(logits, x).sum()
        sums["psnr"] += psnr(recon, x).sum()
        sums["ssim"] += ssim(recon, x).sum()
        sums["loss"] += model.loss_fn(logits, x).double() * len(x)
    timed = len(images) - min(batch_size, len(images))
    if timed == 0:  # one batch only: time it again, warm
        _sync(device)
        start = time.perf_counter()
        model.decode_logits(model.encode(x))
        _sync(device)
        forward_seconds, timed = time.perf_counter() - start, len(x)
    means = {k: float(v) / len(images) for k, v in sums.items()}
    speed = timed / max(forward_seconds, 1e-9)
    return Evaluation(images=len(images), images_per_s=speed,
                      params=sum(p.numel() for p in model.parameters()), **means)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()

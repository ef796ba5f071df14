"""Reconstruction metrics on image batches ``(N, C, H, W)`` in [0, 1].

Each metric is computed per image, then averaged over the batch:

- ``mse``: mean squared error;
- ``bce``: binary cross-entropy of the reconstruction (from logits where available);
- ``psnr``: ``10 log10(1 / mse)`` dB, with the MSE floored at 1e-10 (so at most 100 dB);
- ``ssim``: Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, data range 1, population (not sample) statistics, averaged over the "valid"
  positions (no padding) and over channels — the reference MATLAB ``ssim_index``, and
  scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.

``BUILTIN`` holds them as metric descriptors, the shape a plugin's metric has, so a
model's mean metrics over a split (``aezoo.evaluation.evaluate``) computes both alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aezoo.errors import ShapeError
from aezoo.protocols import MetricComponent

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


# By the name aezoo eval reports each under; ssim needs images of SSIM_WINDOW or more,
# input_psnr (of the corrupted inputs against the clean images) a --corrupt.
BUILTIN = {
    "mse": MetricComponent(mse, "mean squared error"),
    "bce": MetricComponent(lambda fwd: bce_with_logits(fwd.logits, fwd.target),
                           "binary cross-entropy, from logits", sees_forward=True),
    "psnr": MetricComponent(psnr, "peak signal-to-noise ratio (dB)", higher_is_better=True),
    "ssim": MetricComponent(ssim, "structural similarity", higher_is_better=True),
    "input_psnr": MetricComponent(lambda fwd: psnr(fwd.input, fwd.target),
                                  "PSNR of the corrupted inputs (dB)", higher_is_better=True,
                                  sees_forward=True),
}

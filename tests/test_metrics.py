"""Metrics against known values and an independent SSIM; reconstruction grids and PNGs."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import aezoo
from aezoo import evaluation, metrics
from aezoo.errors import ShapeError
from aezoo.viz import PAD, encode_png, grid, reconstruct, write_png


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. (2004) written out directly: a full 11x11 Gaussian window (sigma 1.5)
    slid over every 'valid' position, population statistics, mean over the map."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    window = np.outer(g, g)
    window /= window.sum()
    oh, ow = x.shape[0] - 10, x.shape[1] - 10

    def filt(a: np.ndarray) -> np.ndarray:
        out = np.zeros((oh, ow))
        for i in range(11):
            for j in range(11):
                out += window[i, j] * a[i:i + oh, j:j + ow]
        return out

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random images with structure (smoothed noise), in [0, 1]."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, c, h + 4, w + 4))
    a = sum(a[:, :, i:i + h, j:j + w] for i in range(5) for j in range(5)) / 25
    return torch.from_numpy((a - a.min()) / (a.max() - a.min()))


# --- SSIM -------------------------------------------------------------------------------

def test_ssim_of_an_image_with_itself_is_one() -> None:
    x = images(3, 1, 28, 28)
    assert torch.allclose(metrics.ssim(x, x), torch.ones(3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 11, 17)])
def test_ssim_agrees_with_the_direct_reference(shape: tuple[int, int, int]) -> None:
    x = images(4, *shape, seed=1)
    y = (x + 0.15 * torch.from_numpy(np.random.default_rng(2).standard_normal(x.shape))).clamp(0, 1)
    ours = metrics.ssim(x, y)
    for i in range(len(x)):
        ref = np.mean([reference_ssim(x[i, c].numpy(), y[i, c].numpy()) for c in range(shape[0])])
        assert float(ours[i]) == pytest.approx(ref, abs=1e-10)
    assert 0 < float(ours.mean()) < 1


def test_ssim_agrees_with_scikit_image_when_installed() -> None:
    skm = pytest.importorskip("skimage.metrics")
    x = images(2, 1, 28, 28, seed=3)
    y = images(2, 1, 28, 28, seed=4)
    for i in range(2):
        ref = skm.structural_similarity(x[i, 0].numpy(), y[i, 0].numpy(), data_range=1.0,
                                        gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
        assert float(metrics.ssim(x[i:i + 1], y[i:i + 1])) == pytest.approx(ref, abs=1e-8)


def test_ssim_falls_for_worse_images_and_rejects_tiny_ones() -> None:
    x = images(2, 1, 28, 28, seed=5)
    noise = torch.from_numpy(np.random.default_rng(6).standard_normal(x.shape))
    mild, strong = (x + 0.05 * noise).clamp(0, 1), (x + 0.3 * noise).clamp(0, 1)
    assert (metrics.ssim(x, mild) > metrics.ssim(x, strong)).all()
    assert (metrics.ssim(x, 1 - x) < 0).all()  # inverted structure
    with pytest.raises(ShapeError, match="11x11"):
        metrics.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# --- PSNR, MSE, BCE ---------------------------------------------------------------------

def test_psnr_of_a_known_error_is_exact() -> None:
    x = torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64)
    sign = torch.where(torch.arange(64).view(8, 8) % 2 == 0, 1.0, -1.0).double()
    y = x + 0.1 * sign  # every pixel off by 0.1: MSE 0.01, PSNR 20 dB
    assert metrics.mse(y, x).tolist() == pytest.approx([0.01, 0.01], abs=1e-15)
    assert metrics.psnr(y, x).tolist() == pytest.approx([20.0, 20.0], abs=1e-9)


def test_psnr_of_gaussian_noise_matches_its_variance() -> None:
    x = torch.full((4, 1, 64, 64), 0.5, dtype=torch.float64)
    sigma = 0.05
    y = x + sigma * torch.from_numpy(np.random.default_rng(7).standard_normal(x.shape))
    expected = -10 * math.log10(sigma ** 2)  # 26.02 dB
    assert float(metrics.psnr(y, x).mean()) == pytest.approx(expected, abs=0.15)
    assert float(metrics.psnr(x, x).mean()) == pytest.approx(100.0)  # the MSE floor


def test_bce_from_logits_matches_bce_of_probabilities_and_survives_extremes() -> None:
    target = images(2, 1, 12, 12, seed=8)
    logits = torch.linspace(-6, 6, 288, dtype=torch.float64).view(2, 1, 12, 12)
    assert torch.allclose(metrics.bce_with_logits(logits, target),
                          metrics.bce(torch.sigmoid(logits), target), atol=1e-6)
    extreme = metrics.bce_with_logits(torch.full((1, 1, 4, 4), 100.0), torch.zeros(1, 1, 4, 4))
    assert float(extreme) == pytest.approx(100.0)


def test_evaluate_reports_the_metrics_of_the_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = aezoo.build("cae-upsample")
    data = (images(40, 1, 28, 28, seed=9) * 255).round().to(torch.uint8)
    result = evaluation.evaluate(model, data, batch_size=16)
    x = data.float() / 255
    with torch.no_grad():
        logits = model.decode_logits(model.encode(x))
        loss = float(model.loss(x))
    recon = torch.sigmoid(logits)
    assert result.images == 40 and result.params == 4385 and result.images_per_s > 0
    assert result.mse == pytest.approx(float(metrics.mse(recon, x).mean()), rel=1e-6)
    assert result.ssim == pytest.approx(float(metrics.ssim(recon, x).mean()), rel=1e-6)
    assert result.psnr == pytest.approx(float(metrics.psnr(recon, x).mean()), rel=1e-6)
    assert result.bce == pytest.approx(loss, rel=1e-5)  # bce is its loss
    assert result.loss == pytest.approx(result.bce, rel=1e-5)


# --- grids and PNGs ---------------------------------------------------------------------

def decode_png(data: bytes) -> np.ndarray:
    """The pixels of a PNG, read by Pillow, as ``(H, W, C)``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode in ("L", "RGB")
        pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


@pytest.mark.parametrize("channels", [1, 3])
def test_grid_layout_and_png_round_trip(channels: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    top = rng.integers(0, 256, (5, channels, 7, 9), dtype=np.uint8)
    bottom = rng.integers(0, 256, (5, channels, 7, 9), dtype=np.uint8)
    picture = grid(top, bottom, scale=3)
    assert picture.shape == (2 * 7 * 3 + 3 * PAD, 5 * 9 * 3 + 6 * PAD, channels)
    # the second image of the bottom row, enlarged 3x
    y0, x0 = PAD + (21 + PAD), PAD + (27 + PAD)
    cell = picture[y0:y0 + 21, x0:x0 + 27]
    assert np.array_equal(cell, bottom[1].repeat(3, 1).repeat(3, 2).transpose(1, 2, 0))
    path = write_png(tmp_path / "g.png", picture)
    assert np.array_equal(decode_png(path.read_bytes()), picture)


def test_png_is_readable_by_pillow_when_installed(tmp_path: Path) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    picture = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    (tmp_path / "p.png").write_bytes(encode_png(picture))
    with image_mod.open(tmp_path / "p.png") as im:
        assert im.mode == "RGB" and im.size == (3, 2)
        assert np.array_equal(np.asarray(im), picture)


def test_reconstruct_returns_uint8_images_of_the_input_shape() -> None:
    model = aezoo.build("cae-upsample", input_shape=(3, 32, 32))
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = reconstruct(model, x, torch.channels_last)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert model.training  # left as it was found

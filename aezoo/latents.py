"""The latent space as a picture: codes projected to 2-D, a dot per image coloured by label.

PCA always works (numpy's SVD of the centred codes); UMAP (``umap-learn``) and t-SNE
(scikit-learn) are used when installed. The picture is drawn with Pillow, like the loss
curves: ``aezoo encode RUN --plot latents.png`` and ``aezoo.encode(..., plot=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aezoo.curves import INK, PALETTE, Axis, Canvas, Color, _text_width, ink, label, linear_ticks
from aezoo.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

PROJECTIONS = ("pca", "umap", "tsne")
MAX_LEGEND = 20  # classes named in the legend; more are counted
GREY: Color = (120, 120, 120)


@dataclass
class Projection:
    """2-D points, the method, and what its axes are called."""

    points: np.ndarray  # (N, 2) float64
    method: str
    axes: tuple[str, str]
    note: str = ""


def project(latents: np.ndarray, method: str = "pca", seed: int = 0) -> Projection:
    """``latents`` ``(N, ...)`` flattened and projected to ``(N, 2)`` by ``method``: pca
    (the top two principal components), umap (needs umap-learn) or tsne (scikit-learn)."""
    if method not in PROJECTIONS:
        raise UsageError(f"unknown projection '{method}'", "use pca, umap or tsne")
    x = np.asarray(latents, dtype=np.float64).reshape(len(latents), -1)
    if len(x) < 2:
        raise UsageError(f"a latent picture needs at least 2 images (got {len(x)})",
                         "encode more images (drop --limit)")
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise UsageError("--projection umap needs umap-learn, which is not installed",
                             "pip install umap-learn, or use --projection pca") from None
        points = umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
        return Projection(np.asarray(points, dtype=np.float64), "UMAP", ("UMAP 1", "UMAP 2"))
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise UsageError("--projection tsne needs scikit-learn, which is not installed",
                             "pip install scikit-learn, or use --projection pca") from None
        perplexity = float(min(30, max(2, (len(x) - 1) / 3)))
        points = TSNE(n_components=2, random_state=seed, perplexity=perplexity,
                      init="pca").fit_transform(x)
        return Projection(np.asarray(points, dtype=np.float64), "t-SNE", ("t-SNE 1", "t-SNE 2"))
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2] if len(vt) >= 2 else np.vstack([vt, np.zeros_like(vt)])
    share = s**2 / max(float((s**2).sum()), 1e-300)
    shares = [float(share[k]) if k < len(share) else 0.0 for k in (0, 1)]
    return Projection(centred @ components.T, "PCA",
                      (f"PC1 ({shares[0]:.1%} of variance)", f"PC2 ({shares[1]:.1%})"))


def _dot_offsets(radius: float) -> list[tuple[int, int]]:
    r = math.ceil(radius)
    return [(dx, dy) for dx in range(-r, r + 1) for dy in range(-r, r + 1)
            if dx * dx + dy * dy <= radius * radius + 0.5]


def picture(projection: Projection, labels: np.ndarray | None = None,
            class_names: Sequence[str] | None = None, title: str = "",
            size: tuple[int, int] = (620, 480), seed: int = 0) -> Image.Image:
    """A scatter plot of ``projection``'s points, coloured by ``labels`` (named by
    ``class_names`` where known) with a legend on the right; dots drawn in a random order
    (``seed``) so that no class hides the others."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    points = projection.points
    classes = sorted({int(v) for v in labels}) if labels is not None else []
    names = {k: (class_names[k] if class_names and 0 <= k < len(class_names) else str(k))
             for k in classes}
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True)) \
        if labels is not None else {}
    legend = [(k, f"{names[k]} ({int(counts[k]):,})") for k in classes]
    shown = legend[:MAX_LEGEND]
    legend_w = (max((_text_width(t) for _, t in shown), default=0) + 40) if shown else 0
    w, h = size[0] + int(legend_w), size[1]
    left, right, top, bottom = 64, 16 + int(legend_w), 34, 46
    x0, x1, y0, y1 = left, w - right, top, h - bottom
    canvas = Canvas((w, h))
    finite = np.isfinite(points).all(axis=1)
    xs, ys = points[finite, 0], points[finite, 1]
    xa = Axis(float(xs.min(initial=0.0)), float(xs.max(initial=1.0)), x0, x1, False)
    ya = Axis(float(ys.min(initial=0.0)), float(ys.max(initial=1.0)), y1, y0, False)
    for t in linear_ticks(*xa.bounds(), target=6):
        canvas.line((xa(t), y0, xa(t), y1), (236, 236, 236))
        canvas.text((xa(t), y1 + 4), label(t), INK, "ma")
    for t in linear_ticks(*ya.bounds(), target=6):
        canvas.line((x0, ya(t), x1, ya(t)), (236, 236, 236))
        canvas.text((x0 - 5, ya(t)), label(t), INK, "rm")
    colors = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(classes)}
    # The dots: painted into the palette image with numpy, in a seeded random order.
    inks = np.array([ink(colors[int(v)]) for v in labels[finite]] if labels is not None
                    else [ink(PALETTE[0])] * int(finite.sum()), dtype=np.uint8)
    order = np.random.default_rng(seed).permutation(len(xs))
    px = np.rint(x0 + (xs - xa.lo) / (xa.hi - xa.lo) * (x1 - x0))[order].astype(np.int64)
    py = np.rint(y1 + (ys - ya.lo) / (ya.hi - ya.lo) * (y0 - y1))[order].astype(np.int64)
    radius = 2.0 if len(xs) <= 2000 else 1.5 if len(xs) <= 20000 else 1.0
    pixels = np.array(canvas.image)
    for dx, dy in _dot_offsets(radius):
        cx, cy = np.clip(px + dx, x0 + 1, x1 - 1), np.clip(py + dy, y0 + 1, y1 - 1)
        pixels[cy, cx] = inks[order]
    canvas.image = PILImage.fromarray(pixels, "P")
    canvas.draw = ImageDraw.Draw(canvas.image)
    canvas.draw.rectangle((x0, y0, x1, y1), outline=ink(INK))
    canvas.text(((x0 + x1) / 2, y1 + 22), projection.axes[0], INK, "ma")
    canvas.text((6, y0 - 8), projection.axes[1], INK, "ls")
    if title:
        canvas.text(((x0 + x1) / 2, 6), title, INK, "ma")
    for row, (k, text) in enumerate(shown):
        cy = y0 + 8 + 17 * row
        canvas.draw.ellipse((x1 + 14, cy - 4, x1 + 22, cy + 4), fill=ink(colors[k]))
        canvas.text((x1 + 28, cy), text, INK, "lm")
    if len(legend) > len(shown):
        canvas.text((x1 + 14, y0 + 8 + 17 * len(shown)), f"+{len(legend) - len(shown)} more",
                    GREY, "lm")
    if labels is None:
        canvas.text((x1 - 6, y1 - 6), "no labels: one colour", GREY, "rd")
    return canvas.finish()


def write(path: Any, image: Image.Image) -> Any:
    """Write the picture as a PNG, atomically (the errors of every aezoo picture)."""
    from aezoo.curves import write_picture

    return write_picture(path, image)

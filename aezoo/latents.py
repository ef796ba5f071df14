"""The latent space as a picture: codes projected to 2-D, a dot per image coloured by label.

PCA always works (numpy's SVD of the centred codes); UMAP (``umap-learn``) and t-SNE
(scikit-learn) are used when installed. The picture is drawn with matplotlib, like the
loss curves: ``aezoo encode RUN --plot latents.png`` and ``aezoo.encode(..., plot=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aezoo.curves import PALETTE, figure
from aezoo.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PROJECTIONS = ("pca", "umap", "tsne")
MAX_LEGEND = 20  # classes named in the legend; more are counted
GREY = "#787878"
LEGEND_WIDTH = 170  # pixels to the right of the plot for the classes' names


@dataclass
class Projection:
    """2-D points, the method, and what its axes are called."""

    points: np.ndarray  # (N, 2) float64
    method: str
    axes: tuple[str, str]


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


def picture(projection: Projection, labels: np.ndarray | None = None,
            class_names: Sequence[str] | None = None, title: str = "",
            size: tuple[int, int] = (620, 480), seed: int = 0) -> Figure:
    """A scatter plot of ``projection``'s points, coloured by ``labels`` (named by
    ``class_names`` where known) with a legend on the right; dots drawn in a random order
    (``seed``) so that no class hides the others."""
    from matplotlib.lines import Line2D

    points = projection.points
    classes = sorted({int(v) for v in labels}) if labels is not None else []
    names = {k: (class_names[k] if class_names and 0 <= k < len(class_names) else str(k))
             for k in classes}
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True)) \
        if labels is not None else {}
    fig, (ax,) = figure(size[0] + (LEGEND_WIDTH if classes else 0), size[1])
    finite = np.isfinite(points).all(axis=1)
    colors = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(classes)}
    dots = np.array([colors[int(v)] for v in labels[finite]] if labels is not None
                    else [PALETTE[0]] * int(finite.sum()))
    order = np.random.default_rng(seed).permutation(int(finite.sum()))
    area = 16.0 if len(order) <= 2000 else 9.0 if len(order) <= 20000 else 4.0
    ax.scatter(points[finite, 0][order], points[finite, 1][order], s=area,
               c=list(dots[order]), linewidths=0)
    ax.set(xlabel=projection.axes[0], ylabel=projection.axes[1], title=title)
    shown = [Line2D([], [], linestyle="none", marker="o", color=colors[k],
                    label=f"{names[k]} ({int(counts[k]):,})") for k in classes[:MAX_LEGEND]]
    if len(classes) > MAX_LEGEND:
        shown.append(Line2D([], [], linestyle="none",
                            label=f"+{len(classes) - MAX_LEGEND} more"))
    if shown:
        ax.legend(handles=shown, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False,
                  fontsize="small", borderaxespad=0)
    if labels is None:
        ax.text(0.99, 0.01, "no labels: one colour", color=GREY, transform=ax.transAxes,
                ha="right", va="bottom", fontsize="small")
    return fig

"""Anomaly scoring: the reconstruction error of every image of a split (``aezoo score``).

Scores are the per-image values ``aezoo eval`` averages (``bce``, ``mse``; ``ssim`` as
``1 - SSIM``): higher means worse reconstructed, more unusual. A threshold is a percentile
of the validation split's scores; images above it are flagged. With known outlier labels
the ROC AUC says how well the score separates them (rank-based, ties counted half).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aezoo.errors import UsageError
from aezoo.fileio import atomic_write, finite_or_null
from aezoo.inference import METRICS, default_metric
from aezoo.loaded import load_split
from aezoo.outputs import write_npy

__all__ = ["SCORE_SUFFIXES", "Scores", "check_scores_path", "roc_auc", "score_split",
           "worst_picture", "write_scores"]

SCORE_SUFFIXES = (".csv", ".json", ".npy")


@dataclass
class Scores:
    """The scores of one split, its threshold and what it flags, and the AUC if asked."""

    model: str
    data_name: str
    split: str
    metric: str
    scores: np.ndarray  # float64 (N,)
    labels: np.ndarray | None
    percentile: float | None = None
    threshold: float | None = None
    flagged: np.ndarray | None = None  # indices above the threshold
    outlier_labels: tuple[int, ...] = ()
    auc: float | None = None
    loaded: Any = None  # the Loaded split (model and images), for pictures
    picture: Path | None = None  # the PNG of the worst, where one was written

    def summary(self) -> dict[str, Any]:
        """Everything but the per-image rows (one JSON object)."""
        return {"model": self.model, "data": self.data_name, "split": self.split,
                "metric": self.metric, "images": len(self.scores),
                "mean": float(self.scores.mean()) if len(self.scores) else None,
                "percentile": self.percentile, "threshold": self.threshold,
                "flagged": None if self.flagged is None else len(self.flagged),
                "outlier_labels": list(self.outlier_labels) or None, "auc": self.auc}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` (higher scores
    should mean positive): the Mann-Whitney U statistic over both counts, ties averaged."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise UsageError(f"ROC AUC needs outliers and inliers (got {n_pos} and {n_neg})",
                         "choose --outlier-label values and a split that has both")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties averaged
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def check_scores_path(out: Path) -> str:
    """``csv``, ``json`` or ``npy`` from ``out``'s extension; any other is refused."""
    suffix = out.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise UsageError(f"cannot write scores to {out} (unknown extension "
                         f"'{suffix or out.name}')", "use --out NAME.csv, NAME.json or NAME.npy")
    return suffix[1:]


def score_split(target: str | Path, data: str | None = None, split: str | None = None,
                metric: str | None = None, limit: int | None = None, batch_size: int = 1024,
                device: str = "auto", percentile: float | None = None,
                outlier_labels: tuple[int, ...] = ()) -> Scores:
    """Score every image of a split; ``percentile``: flag those above that percentile of the
    validation split's scores; ``outlier_labels``: the ROC AUC of the scores for them."""
    if metric is not None and metric not in METRICS:
        raise UsageError(f"unknown metric '{metric}'", "use mse, bce or ssim")
    if percentile is not None and not 0 <= percentile <= 100:
        raise UsageError(f"--threshold-percentile must be between 0 and 100 (got {percentile})",
                         "pass e.g. --threshold-percentile 99")
    target = Path(target)
    loaded = load_split(target, data, split, limit, device)
    model = loaded.model
    metric = metric or default_metric(model)
    scores = model.score(loaded.images, metric, batch_size=batch_size, output="numpy")
    result = Scores(str(loaded.path), loaded.data_name, loaded.split, metric, scores,
                    None if loaded.labels is None else np.asarray(loaded.labels),
                    loaded=loaded)
    if percentile is not None:
        val = scores if loaded.split == "val" and limit is None else model.score(
            load_split(target, data, "val", None, device).images, metric,
            batch_size=batch_size, output="numpy")
        result.percentile = percentile
        result.threshold = float(np.percentile(val, percentile))
        above = np.flatnonzero(scores > result.threshold)  # highest score first
        result.flagged = above[np.argsort(-scores[above], kind="stable")]
    if outlier_labels:
        if result.labels is None:
            raise UsageError(f"dataset {loaded.data_name} has no labels on its {loaded.split} "
                             "split", "drop --outlier-label, or score a labelled dataset")
        result.outlier_labels = tuple(outlier_labels)
        result.auc = roc_auc(scores, np.isin(result.labels, outlier_labels))
    return result


def write_scores(out: Path, result: Scores) -> None:
    """CSV (``index,label,score[,flagged]``), JSON (the summary and one row per image) or
    ``.npy`` (the float64 scores alone), atomically."""
    kind = check_scores_path(out)
    if kind == "npy":
        write_npy(out, result.scores)
        return
    labels, flagged = result.labels, result.flagged
    marked = set() if flagged is None else set(flagged.tolist())
    rows = [{"index": i, "label": None if labels is None else int(labels[i]), "score": float(s),
             **({} if flagged is None else {"flagged": i in marked})}
            for i, s in enumerate(result.scores)]
    if kind == "json":
        text = json.dumps(finite_or_null({**result.summary(), "rows": rows}),
                          allow_nan=False) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["index", "score"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                          for k, v in r.items()} for r in rows)
        text = buf.getvalue()
    atomic_write(out, text.encode())


def worst_picture(result: Scores, k: int, scale: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest-scoring images: originals over reconstructions over error maps
    (``|image - reconstruction|``, scaled so the largest error shown is white), each row
    named on the left and each tile's index and score below it; and their indices, worst
    first."""
    import torch

    from aezoo.viz import grid, labelled, tile_captions

    worst = np.argsort(-result.scores, kind="stable")[:k]
    images = result.loaded.images[torch.from_numpy(worst).to(result.loaded.images.device)]
    recon = result.loaded.model.reconstruct(images, output="torch")
    error = (images.float() / 255 - recon).abs()
    error = error / error.max().clamp_min(1e-12)
    h, w = images.shape[-2:]
    picture = tile_captions(grid(images, recon, error, scale=scale),
                            [(f"#{i}", f"{result.scores[i]:.4g}") for i in worst], w * scale)
    return labelled(picture, ("original", "reconstruction", "|error|"), h * scale), worst

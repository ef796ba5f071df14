"""The dataset container and the lookup of a dataset by name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aezoo.errors import UnknownNameError
from aezoo.specs import DataSpec

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class ArrayDataset:
    """Train and validation images as uint8 ``(N, C, H, W)`` arrays, labels when known."""

    name: str
    train: np.ndarray
    val: np.ndarray
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None

    @property
    def shape(self) -> Shape:
        c, h, w = self.train.shape[1:]
        return (int(c), int(h), int(w))

    def limited(self, limit: int | None) -> ArrayDataset:
        """At most ``limit`` training images (validation untouched)."""
        if limit is None or limit >= len(self.train):
            return self
        labels = None if self.train_labels is None else self.train_labels[:limit]
        return ArrayDataset(self.name, self.train[:limit], self.val, labels, self.val_labels)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/validation indices with each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(val_idx))


def load_dataset(spec: DataSpec) -> ArrayDataset:
    """The dataset ``spec.name`` names, limited to ``spec.limit`` training images."""
    from aezoo.data import embedded

    sources = {"mnist5k": embedded.load_mnist5k}
    if spec.name not in sources:
        import difflib

        close = difflib.get_close_matches(spec.name, list(sources), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(f"unknown dataset '{spec.name}'",
                               f"{hint}available: {', '.join(sorted(sources))}")
    return sources[spec.name]().limited(spec.limit)

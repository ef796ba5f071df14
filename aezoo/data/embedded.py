"""``mnist5k``: 5,000 real MNIST digits shipped inside the package (CC BY-SA 3.0).

See MNIST5K.md beside the file for provenance and attribution.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

from aezoo.data.base import ArrayDataset, stratified_split
from aezoo.data.source import LoadContext, Splits
from aezoo.errors import DataError

SPLIT_SEED = 0  # fixed: the same 4,500 / 500 split for everyone
VAL_FRACTION = 0.1


@cache
def read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as uint8 (N, 1, 28, 28) and their labels, sorted by class."""
    try:
        with resources.files("aezoo.data").joinpath("mnist5k.npz").open("rb") as f:
            with np.load(f, allow_pickle=False) as npz:
                images, labels = npz["images"], npz["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"the embedded dataset mnist5k cannot be read ({exc})",
                        "reinstall aezoo") from None
    images.flags.writeable = False  # cached and shared: nobody may change it
    labels.flags.writeable = False
    return images[:, None, :, :], labels


def mnist5k_splits(ctx: LoadContext) -> Splits:
    """The registered source: everything is ``train``; the validation split is carved by
    the core (with the defaults, exactly the 4,500 / 500 split of ``load_mnist5k``)."""
    images, labels = read_mnist5k()
    return Splits(train=images, train_labels=labels)


@cache
def load_mnist5k() -> ArrayDataset:
    images, labels = read_mnist5k()
    train_idx, val_idx = stratified_split(labels, VAL_FRACTION, SPLIT_SEED)
    return ArrayDataset("mnist5k", images[train_idx], images[val_idx],
                        labels[train_idx], labels[val_idx])

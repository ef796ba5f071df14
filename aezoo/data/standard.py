"""Loaders of the downloadable benchmarks: the MNIST family (IDX) and CIFAR-10 (binary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aezoo.data.formats import read_cifar10, read_idx
from aezoo.data.source import LoadContext, Splits
from aezoo.errors import DataError


def load_idx_dataset(ctx: LoadContext) -> Splits:
    """MNIST, Fashion-MNIST, KMNIST: the same four IDX files, the standard 60k/10k split."""
    paths = ctx.fetch()
    train = _pair(paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"])
    test = _pair(paths["t10k-images-idx3-ubyte.gz"], paths["t10k-labels-idx1-ubyte.gz"])
    return Splits(train=train[0], train_labels=train[1], test=test[0], test_labels=test[1])


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{images_path} {images.shape} and {labels_path} {labels.shape} "
                        "do not match", "delete both; they are downloaded again on next use")
    return images[:, None], labels


def load_cifar10(ctx: LoadContext) -> Splits:
    """CIFAR-10's 50k/10k split from the binary archive (never the pickled version)."""
    train, train_labels, test, test_labels = read_cifar10(ctx.fetch()["cifar-10-binary.tar.gz"])
    return Splits(train=train, train_labels=train_labels, test=test, test_labels=test_labels)

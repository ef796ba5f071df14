"""Streamed datasets: splits decoded on the fly by a ``torch.utils.data.DataLoader``.

THE CONTRACT for a source that does not return arrays (docs/data.md, "Writing a
streamed source"). A source's ``load(ctx)`` may return :class:`StreamedSplits` instead
of ``Splits``; each split is one of:

- **map-style**: a ``torch.utils.data.Dataset`` with ``__len__`` and
  ``__getitem__(i) -> torch.Tensor``, a uint8 ``(C, H, W)`` image. Decoding, resizing
  (``ctx.image_size``) and channel conversion (``ctx.channels``) happen there, i.e. in
  the DataLoader's worker processes. The core orders it (the trainer's seeded
  permutation, exact on resume), shards it under DDP, carves a validation split from
  it by index when the source has none and applies ``--limit`` by index.
- **iterable**: a ``torch.utils.data.IterableDataset`` (see :class:`IterableSplit`)
  yielding uint8 ``(C, H, W)`` tensors, with ``__len__`` (images per epoch, all ranks),
  ``set_epoch(epoch, seed)`` (its shuffle for that epoch), ``set_shard(rank,
  world_size)`` (this rank's part; called once, before iterating) and ``skip(n)`` (for
  the next iteration only: each worker leaves out the first ``n // num_workers`` images
  it would yield; exact resume). It splits its shards across DataLoader workers itself
  (``torch.utils.data.get_worker_info()``; ``num_workers`` is 1 without workers). The
  workers take turns handing over 64 images each; the core calls ``skip`` with a multiple
  of ``num_workers * 64`` and drops the rest itself. An iterable ``train`` needs a
  ``val`` split from the source.

A streamed source must honour ``ctx.image_size`` and ``ctx.channels`` (the core cannot
convert what it never holds) and state the resulting ``shape``; a decoded image of
another shape is an error naming the split. Raise ``aezoo.errors.DataError`` in
``__getitem__`` / ``__iter__`` for a bad file: it reaches the user as one line even
from a worker process. Objects must be picklable by ``multiprocessing`` (workers are
started with the platform's default method); keep file handles out of ``__init__``.

This module imports neither numpy nor torch at import time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aezoo.data.source import Shape

if TYPE_CHECKING:
    import numpy as np
    import torch


@runtime_checkable
class MapSplit(Protocol):
    """A map-style split: ``dataset[i]`` is a uint8 ``(C, H, W)`` tensor."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> torch.Tensor: ...


@runtime_checkable
class IterableSplit(Protocol):
    """An iterable split (an ``IterableDataset``) the core can order, shard and resume."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Any: ...

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Shuffle for ``epoch`` (from 1) of a run seeded ``seed``; deterministic."""

    def set_shard(self, rank: int, world_size: int) -> None:
        """Yield only this rank's part from now on (disjoint across ranks)."""

    def skip(self, n: int) -> None:
        """In the next iteration, each worker leaves out its first ``n // num_workers``
        images (``n`` is a multiple of ``num_workers * 64``)."""


def is_iterable(split: Any) -> bool:
    """Whether ``split`` is an iterable (not map-style) split."""
    if isinstance(split, Indexed):
        return False
    from torch.utils.data import IterableDataset  # torch is there: splits are torch's

    if isinstance(split, IterableDataset):  # (it inherits a __getitem__ that raises)
        return True
    return isinstance(split, IterableSplit) and not hasattr(split, "__getitem__")


@dataclass(frozen=True)
class StreamedSplits:
    """What a streamed source's ``load`` returns (instead of ``Splits``).

    ``shape`` is the ``(C, H, W)`` every image has (after ``ctx.image_size`` /
    ``ctx.channels``). Labels are optional integer arrays, one per image of a map-style
    split (they stratify the carved validation split and travel to ``aezoo encode``);
    ``class_names[k]`` names label ``k``.
    """

    shape: Shape
    train: Any  # MapSplit | IterableSplit
    val: Any | None = None
    test: Any | None = None
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None


@dataclass(frozen=True)
class Indexed:
    """A map-style split seen through ``indices`` (all of it when None): the core's
    validation carve, ``--limit`` and DDP shards are index arrays, never copies."""

    dataset: Any  # MapSplit
    indices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def position(self, i: int) -> int:
        """The dataset index of this view's ``i``-th image."""
        return int(i) if self.indices is None else int(self.indices[i])

    def take(self, keep: np.ndarray) -> Indexed:
        """The view of ``keep`` (indices into this view)."""
        import numpy as np

        base = np.arange(len(self.dataset)) if self.indices is None else self.indices
        return Indexed(self.dataset, np.asarray(base)[keep])


@dataclass(frozen=True)
class StreamedDataset:
    """Train/val(/test) splits that are read through a DataLoader, never held whole.

    ``train``/``val``/``test`` are :class:`Indexed` views of map-style splits or
    iterable splits; ``limit`` caps the training images per epoch (all ranks) for an
    iterable ``train``. The trainer consumes it like an ``ArrayDataset``.
    """

    name: str
    shape: Shape
    train: Any  # Indexed | IterableSplit
    val: Any
    test: Any | None = None
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: list[str] | None = None
    limit: int | None = None

    def splits(self) -> dict[str, int]:
        """Image count per split (an iterable split's as it declares)."""
        counts = {"train": self.train_count(), "val": len(self.val)}
        return counts if self.test is None else {**counts, "test": len(self.test)}

    def train_count(self) -> int:
        n = len(self.train)
        return n if self.limit is None else min(n, self.limit)


def as_array(split: Any, limit: int | None = None) -> Any:
    """The first ``limit`` images (all by default) of a split as a uint8 (N, C, H, W)
    ndarray, read in this process: for evaluation and encoding, not for training."""
    import numpy as np

    if isinstance(split, np.ndarray):
        return split[:limit]
    if hasattr(split, "read") and hasattr(split, "positions"):  # a MappedArray
        return split.read(slice(0, limit))
    n = len(split) if limit is None else min(limit, len(split))
    if isinstance(split, Indexed):
        return np.stack([np.asarray(split.dataset[split.position(i)]) for i in range(n)])
    return np.stack([np.asarray(image) for image in itertools.islice(split, n)])

"""Images read through a memory map: ``npy:`` files and packed stores, never loaded whole.

A :class:`MappedArray` is a uint8 ``(N, C, H, W)`` view of a memory-mapped array seen
through an index array: the validation carve, ``--limit`` and DDP shards are index
arrays over the map, so nothing is copied until a batch is read (:meth:`read`).
It behaves enough like an ndarray (``len``, ``shape``, slicing, ``np.asarray``) for the
code that wants arrays of small data; the trainer reads batches from it instead.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

CHUNK = 4096  # images per read when materialising


def is_mapped(array: Any) -> bool:
    """Whether ``array`` reads from a memory map (a MappedArray, or a view of an mmap)."""
    if isinstance(array, MappedArray):
        return True
    base = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return isinstance(base, mmap.mmap)


class MappedArray:
    """``base[indices]`` without the copy: ``base`` is a (mapped) uint8 (M, C, H, W) array."""

    def __init__(self, base: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.base = base
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base) if self.indices is None else len(self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.base.shape[1:])) * self.base.itemsize

    def positions(self, index: Any = None) -> np.ndarray:
        """Rows of ``base`` for ``index`` (a slice or integer array of this view)."""
        whole = np.arange(len(self.base)) if self.indices is None else self.indices
        return whole if index is None else whole[index]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return np.asarray(self.base[int(self.positions()[index])])
        if isinstance(index, slice) and self.indices is None:
            start, stop, step = index.indices(len(self.base))
            if step == 1:
                return MappedArray(self.base[start:stop])
        return MappedArray(self.base, self.positions(index))

    def read(self, index: Any = None) -> np.ndarray:
        """Images ``index`` (all by default) as a C-contiguous ndarray: the rows are read
        in file order (sorted), then put back in the order asked for."""
        if self.indices is None and (index is None or isinstance(index, slice)):
            return np.ascontiguousarray(self.base[index if index is not None else slice(None)])
        rows = self.positions(index)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.base.shape[1:]), dtype=self.base.dtype)
        out[order] = self.base[rows[order]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.base.dtype)
        for start in range(0, len(self), CHUNK):
            out[start:start + CHUNK] = self.read(slice(start, start + CHUNK))
        return out if dtype is None else out.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)

    def __repr__(self) -> str:
        return f"MappedArray(shape={self.shape}, dtype={self.dtype})"

"""Images read through a memory map: ``npy:`` files and packed stores, never loaded whole.

A :class:`MappedArray` is a uint8 ``(N, C, H, W)`` view of a memory-mapped array seen
through an index array: the validation carve, ``--limit`` and DDP shards are index
arrays over the map, so nothing is copied until a batch is read (:meth:`read`).
It behaves enough like an ndarray (``len``, ``shape``, slicing, ``np.asarray``) for the
code that wants arrays of small data; the trainer reads batches from it instead.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from typing import Any, cast

import numpy as np

CHUNK = 4096  # images per read when materialising
# Pages of the map a process has touched count in its RSS until the kernel reclaims them;
# after this many bytes read they are dropped from the process (still in the page cache).
RELEASE_BYTES = 256 * 2**20
FAULT_AROUND = 64 * 2**10


def is_mapped(array: Any) -> bool:
    """Whether ``array`` reads from a memory map (a MappedArray, or a view of an mmap)."""
    return isinstance(array, MappedArray) or _mmap_of(array) is not None


def _mmap_of(array: Any) -> mmap.mmap | None:
    """The ``mmap.mmap`` under ``array`` (a memmap or a view of one: numpy's memmap is
    an ndarray whose base is the mmap), if any."""
    while isinstance(array, np.ndarray):
        array = array.base
    return array if isinstance(array, mmap.mmap) else None


def _file_rows(base: Any) -> tuple[str, int, int] | None:
    """(file, byte offset of row 0, bytes per row) where ``base`` is a C-contiguous block
    of rows of a memory-mapped file (an .npy in N,C,H,W or N,H,W order), else None."""
    if not hasattr(os, "preadv") or not isinstance(base, np.ndarray) or not len(base):
        return None
    root: Any = base
    while isinstance(root, np.ndarray) and not isinstance(root.base, mmap.mmap):
        root = root.base
    if not (isinstance(root, np.memmap) and getattr(root, "filename", None)
            and base.flags.c_contiguous):
        return None
    start = base.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return str(root.filename), int(root.offset) + start, base.nbytes // len(base)


def _shared_bytes() -> int | None:
    """File-backed resident bytes of this process (Linux), or None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


class MappedArray:
    """``base[indices]`` without the copy: ``base`` is a (mapped) uint8 (M, C, H, W) array."""

    def __init__(self, base: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.base = base
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._mmap = _mmap_of(base)
        self._file = _file_rows(base)  # (path, offset, row bytes): rows read with pread
        self._fd: int | None = None
        self._read = 0  # bytes (estimated) mapped since the pages were last released
        self._baseline = _shared_bytes()  # this process's file-backed bytes at the start

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # type: ignore[arg-type]

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
        if self._file is not None:
            return self._pread(self.positions(index))
        if self.indices is None and (index is None or isinstance(index, slice)):
            out = np.array(self.base[index if index is not None else slice(None)], order="C")
        else:
            rows = self.positions(index)
            order = np.argsort(rows, kind="stable")
            out = np.empty((len(rows), *self.base.shape[1:]), dtype=self.base.dtype)
            out[order] = self.base[rows[order]]
        self._release(len(out))
        return out

    def _pread(self, rows: np.ndarray) -> np.ndarray:
        """Rows read from the file with pread, in file order, runs of rows at once: the
        page cache holds them, this process's memory does not (a map's touched pages
        would count in its RSS)."""
        path, offset, row = cast(tuple[str, int, int], self._file)
        if self._fd is None:
            self._fd = os.open(path, os.O_RDONLY)
        fd = self._fd
        order = np.argsort(rows, kind="stable")
        ranked = rows[order]
        got = np.empty((len(rows), row), dtype=np.uint8)  # in file order
        starts = np.flatnonzero(np.diff(ranked, prepend=-2) != 1)  # runs of neighbours
        ends = np.append(starts[1:], len(ranked))
        whole = memoryview(got.reshape(-1).data)
        for a, b, first in zip(starts.tolist(), ends.tolist(), ranked[starts].tolist(),
                               strict=True):
            view, at = whole[a * row:b * row], offset + first * row
            while len(view):
                n = os.preadv(fd, [view], at)
                if n <= 0:
                    raise OSError(f"{path} ended early (truncated while in use?)")
                view, at = view[n:], at + n
        out = np.empty((len(rows), *self.base.shape[1:]), dtype=self.base.dtype)
        out.reshape(len(rows), -1).view(np.uint8)[order] = got
        return out

    def _release(self, images: int) -> None:
        """Drop the map's pages from this process once they pass RELEASE_BYTES (measured
        in /proc/self/statm; elsewhere estimated: a fault maps up to 64 kB around it)."""
        if self._mmap is None:
            return
        now = _shared_bytes()
        if now is None:
            self._read += images * FAULT_AROUND
            grown = self._read
        else:
            grown = now - (self._baseline or 0)
        if grown > RELEASE_BYTES:
            self._read = 0
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._mmap.madvise(mmap.MADV_DONTNEED)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.base.dtype)
        for start in range(0, len(self), CHUNK):
            out[start:start + CHUNK] = self.read(slice(start, start + CHUNK))
        return out if dtype is None else out.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)

    def __repr__(self) -> str:
        return f"MappedArray(shape={self.shape}, dtype={self.dtype})"

"""``folder:PATH`` streamed: images decoded on the fly in DataLoader workers.

The folder is listed once (same files, order, class names and splits as the in-memory
folder source); each image is opened once per read, decoded, converted and resized in
the worker that reads it. Memory is the file list (a few dozen bytes a file, kept in one
buffer so forked workers share it instead of copying it) plus the batches in flight.

When ``--image-size`` and ``--channels`` are both given nothing is opened before training;
otherwise every header is read (in threads) to find the common size and whether any image
is in colour, as the in-memory source does. ``skip_bad`` skips unreadable images and
counts them (:class:`BadImages`) instead of stopping on the first.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from aezoo.data import folder
from aezoo.data import images as decoding
from aezoo.data.source import LoadContext, Progress, Splits
from aezoo.data.streamed import StreamedSplits
from aezoo.errors import DataError, UsageError
from aezoo.fileio import file_identity, open_regular

SKIP_RUN = 64  # consecutive unreadable images before skipping gives up


class PathTable:
    """Paths as one UTF-8 buffer plus offsets: no Python object per file, so forked
    workers touching it do not copy it page by page (reference counts)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        encoded = [str(p).encode("utf-8", "surrogateescape") for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        start, end = self.offsets[i], self.offsets[i + 1]
        return bytes(self.buffer[start:end]).decode("utf-8", "surrogateescape")


class BadImages:
    """Unreadable images skipped so far, counted across worker processes."""

    def __init__(self) -> None:
        self._count = multiprocessing.Value("q", 0)
        self._first: Any = multiprocessing.Array("c", 1024)  # .value: NUL-terminated bytes

    def add(self, where: str) -> None:
        with self._count.get_lock():
            if self._count.value == 0:
                self._first.value = where.encode("utf-8", "replace")[:1023]
            self._count.value += 1

    @property
    def count(self) -> int:
        return int(self._count.value)

    @property
    def first(self) -> str | None:
        return self._first.value.decode("utf-8", "replace") if self.count else None


class FolderStream(Dataset[torch.Tensor]):
    """Map-style: ``self[i]`` is image ``i`` as uint8 ``(C, H, W)``, decoded now."""

    def __init__(self, paths: PathTable, size: tuple[int, int], channels: int,
                 bad: BadImages | None = None) -> None:
        self.paths = paths
        self.size, self.channels = size, channels
        self.bad = bad  # None: the first unreadable image stops training

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> list[object]:
        """Each file's name, size and time (``aezoo data pack`` resumes only the same)."""
        return [[self.paths[i], *file_identity(self.paths[i])] for i in range(len(self))]

    def __getitem__(self, index: int) -> torch.Tensor:
        return skipping(index, len(self), lambda i: self.read(self.paths[i]),
                        lambda i: self.paths[i], self.bad)

    def read(self, path: str) -> np.ndarray:
        with _open_file(path) as f:
            return decoding.decode(f, path, self.size, self.channels)


def skipping(index: int, n: int, read: Callable[[int], np.ndarray],
             where: Callable[[int], str], bad: BadImages | None) -> torch.Tensor:
    """Image ``index``; with ``bad``, an unreadable one is counted and the next readable
    one in order served in its place (batches keep their size, the order stays fixed)."""
    for step in range(min(SKIP_RUN, n)):
        i = (index + step) % n
        try:
            return torch.from_numpy(read(i))
        except DataError:
            if bad is None:
                raise
            bad.add(where(i))
    raise DataError(f"{min(SKIP_RUN, n)} images in a row from {where(index)} are unreadable",
                    "check the folder or dataset: it is not a few bad files")


def _open_file(path: str):  # type: ignore[no-untyped-def]
    try:
        return open_regular(path)  # a FIFO swapped in after listing: refused, not opened
    except OSError as exc:
        raise decoding.unreadable(path, exc) from None


def load(ctx: LoadContext) -> Splits | StreamedSplits:
    """``folder:PATH``: decoded into memory where it fits (``aezoo.data.folder``), else
    (or when ``ctx.stream`` asks) streamed."""
    from aezoo.data import packed

    root = Path(ctx.argument or "").expanduser()
    if not root.exists():
        raise UsageError(f"folder {root} does not exist", "check the path after folder:")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder",
                         f"use npz:{ctx.argument} or npy:{ctx.argument} for array files")
    if packed.is_store(root):  # a directory `aezoo data pack` wrote: read it mapped
        return packed.load_store(root)
    listing = folder.list_folder(root)
    if ctx.stream is False or (ctx.stream is None and not _too_big(listing.files, ctx)):
        return folder.load_folder(root, listing)  # ctx.stream None: decide by size
    return stream_folder(ctx, listing)


def _too_big(files: dict[str, list[Path]], ctx: LoadContext) -> bool:
    """Whether the decoded folder would take over half the available memory."""
    n = sum(len(p) for p in files.values())
    if ctx.image_size is None:
        first = next(p for paths in files.values() for p in paths)
        try:
            with _open_file(str(first)) as f:
                size = decoding.header(f, str(first)).size
        except DataError:
            return False  # the in-memory loader names the file
    else:
        size = ctx.image_size
    return n * (ctx.channels or 3) * size[0] * size[1] > available_bytes() // 2


def available_bytes() -> int:
    """Memory available to this process (Linux: MemAvailable), else the physical size."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def stream_folder(ctx: LoadContext, listing: folder.Listing | None = None) -> StreamedSplits:
    """The folder's splits as map-style datasets: listed, labelled, nothing decoded
    (``load`` has checked that the folder is one)."""
    root = Path(ctx.argument or "").expanduser()
    listing = listing or folder.list_folder(root)
    files = listing.files
    size, channels = ctx.image_size, ctx.channels
    if size is None or channels is None:
        files, common, grey = _scan(files, root, ctx.skip_bad, ctx.progress)
        size = size or common
        channels = channels or (1 if grey else 3)
    bad = BadImages() if ctx.skip_bad else None
    out: dict[str, Any] = {}
    for split, paths in files.items():
        if paths:
            # Sizes are known equal (headers read) or --image-size given: decode() resizes
            # only images of another size.
            out[split] = FolderStream(PathTable(paths), size, channels, bad)
            out[f"{split}_labels"] = listing.labels(split, paths)
    return StreamedSplits(shape=(channels, *size), class_names=listing.classes, **out)


def _scan(files: dict[str, list[Path]], root: Path, skip_bad: bool,
          progress: Progress | None) -> tuple[dict[str, list[Path]], tuple[int, int], bool]:
    """Headers of every file: (readable files, common size, all grey)."""
    every = [p for paths in files.values() for p in paths]

    def one(path: Path) -> decoding.Header | None:
        try:
            with _open_file(str(path)) as f:
                return decoding.header(f, str(path))
        except DataError:
            if not skip_bad:
                raise
            return None

    headers: dict[Path, decoding.Header | None] = {}
    with ThreadPoolExecutor(max_workers=folder._workers()) as pool:
        for done, (path, h) in enumerate(zip(every, pool.map(one, every), strict=True), 1):
            headers[path] = h
            if progress and (done % folder.REPORT_EVERY == 0 or done == len(every)):
                progress("reading image headers", done, len(every), "images")
    good = [(p, h) for p, h in headers.items() if h is not None]
    if not good:
        raise DataError(f"no image in {root} is readable", "check the folder")
    first_path, first = good[0]
    for path, h in good:
        if h.size != first.size:
            a, b = first.size, h.size
            raise DataError(
                f"images in {root} differ in size ({a[1]}x{a[0]} {first_path.name}, "
                f"{b[1]}x{b[0]} {path.name})", "pass --image-size N or HxW to resize them all")
    kept = {split: [p for p in paths if headers[p] is not None]
            for split, paths in files.items()}
    return kept, first.size, all(h.grey for _, h in good)


def skipped_images(data: Any) -> tuple[int, str] | None:
    """(count, first) of the images a streamed dataset skipped so far (skip_bad); None
    when it skipped none (or cannot skip)."""
    for part in ("train", "val", "test"):
        split = getattr(data, part, None)
        bad = getattr(getattr(split, "dataset", split), "bad", None)
        if isinstance(bad, BadImages) and bad.count:
            return bad.count, bad.first or "?"
    return None

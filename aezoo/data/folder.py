"""``folder:PATH``: PNG/JPEG (and BMP/WebP) images under a directory, recursively.

Labels: when every image lies in a first-level subdirectory (``PATH/cat/1.png``) the
subdirectory names are the classes (sorted), used for a stratified validation split.
Splits: when ``PATH`` holds only ``train/`` and any of ``val/`` (``valid/``,
``validation/``) and ``test/``, those are the splits. Hidden files and directories are
skipped. Images are decoded with Pillow in threads; EXIF orientation is applied.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aezoo.data import images as decoding
from aezoo.data.source import Splits
from aezoo.errors import DataError

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test"}
REPORT_EVERY = 256
FIX = "remove or replace the file"  # in memory there is no skipping


@dataclass(frozen=True)
class FolderImages:
    """A split's image files, decoded only where the core asks (:func:`decode_splits`):
    after the validation carve and ``--limit``, so images left out are never opened."""

    paths: tuple[Path, ...]
    root: Path

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Listing:
    """A folder's splits (their directories and image files) and its class names."""

    split_roots: dict[str, Path]
    files: dict[str, list[Path]]
    classes: list[str] | None

    def labels(self, split: str, paths: list[Path]) -> np.ndarray | None:
        """The class index of each of ``paths`` (files of ``split``); None without classes."""
        if self.classes is None:
            return None
        parent, classes = self.split_roots[split], self.classes
        return np.array([classes.index(p.relative_to(parent).parts[0]) for p in paths],
                        dtype=np.int64)


def list_folder(root: Path) -> Listing:
    """The folder's image files per split and its classes; a folder without (training)
    images is refused. The in-memory and the streamed source list alike."""
    split_roots = _split_roots(root)
    seen: set[tuple[int, int]] = set()  # a file linked into two splits counts once
    files = {split: _image_files(path, seen) for split, path in split_roots.items()}
    if not any(files.values()):
        raise DataError(f"folder {root} holds no images ({', '.join(sorted(EXTENSIONS))})",
                        "point folder: at a directory with image files (searched recursively)")
    if split_roots.keys() != {"train"} and not files.get("train"):
        raise DataError(f"folder {root / 'train'} holds no images",
                        "put the training images under train/")
    return Listing(split_roots, files, _classes(split_roots, files))


def load_folder(root: Path, listing: Listing) -> Splits:
    """The folder's splits in memory: its files, decoded where the core asks."""
    out: dict[str, Any] = {"class_names": listing.classes}
    for split, paths in listing.files.items():
        if paths:
            out[split] = FolderImages(tuple(paths), root)
            out[f"{split}_labels"] = listing.labels(split, paths)
    return Splits(**out)


def _split_roots(root: Path) -> dict[str, Path]:
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS]
    names = {p.name.lower() for p in subdirs}
    if "train" in names and names <= SPLIT_DIRS.keys() and not loose:
        roots = {SPLIT_DIRS[p.name.lower()]: p for p in sorted(subdirs)}
        if len(roots) == len(subdirs):  # e.g. both val/ and valid/: not a split layout
            return roots
    return {"train": root}


def _identity(path: str | Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of what ``path`` points to; None if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _image_files(root: Path, seen: set[tuple[int, int]]) -> list[Path]:
    """Image files under ``root``, each real file once (first in sorted walk order).

    Symlinks are followed, but never into a directory already visited (``ln -s . loop``
    would otherwise repeat the tree forever), and a file reached twice (two links, a
    linked directory) counts once. FIFOs, devices and sockets are skipped, never opened.
    ``seen`` (file identities) is shared across the splits of one folder.
    """
    visited = {_identity(root)}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            ident = _identity(os.path.join(dirpath, d))
            if ident is not None and ident not in visited:
                visited.add(ident)
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in EXTENSIONS:
                continue
            path = Path(dirpath) / name
            try:
                st = os.stat(path)
            except OSError:  # a broken link: reading it says so
                found.append(path)
                continue
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            found.append(path)
    return found


def _classes(roots: dict[str, Path], files: dict[str, list[Path]]) -> list[str] | None:
    """Sorted class names when every image sits in a class subdirectory, else None."""
    names: set[str] = set()
    for split, paths in files.items():
        for path in paths:
            parts = path.relative_to(roots[split]).parts
            if len(parts) < 2:
                return None
            names.add(parts[0])
    return sorted(names) if len(names) >= 2 else None


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def decode_splits(parts: dict[str, tuple[FolderImages, np.ndarray]],
                  size: tuple[int, int] | None, channels: int | None,
                  report: Callable[[int, int], None] | None = None,
                  like: tuple[Path, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """The images ``rows`` of each split, each file opened once, on up to 8 threads, in one
    uint8 array per split. Without ``size``, the first image's is every image's (another
    is an error naming both; ``like``, a file and its size, gives it); without
    ``channels``, grey until the first colour image, then every split is widened to RGB."""
    rank = {id(images): k for k, (images, _) in reversed(list(enumerate(parts.values())))}
    keyed = [((rank[id(images)], int(r)), (split, i, images.paths[int(r)]))
             for split, (images, rows) in parts.items() for i, r in enumerate(rows)]
    jobs = [job for _, job in sorted(keyed, key=lambda kj: kj[0])]  # in file order: the
    # first bad file, and the size every image must have, are the first in sorted order
    root = next(iter(parts.values()))[0].root
    first, want = like if like is not None and size is None else (None, size)
    c = channels or 1
    out: dict[str, np.ndarray] = {}
    total = len(jobs)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:  # each file opened once
        for done, ((split, i, path), image) in enumerate(zip(jobs, pool.map(
                lambda job: decoding.decode(job[2], str(job[2]), size, channels, fix=FIX), jobs),
                strict=True), 1):
            hw = (int(image.shape[1]), int(image.shape[2]))
            first, want = first or path, want or hw
            if hw != want:
                raise DataError(f"images in {root} differ in size ({want[1]}x{want[0]} "
                                f"{first.name}, {hw[1]}x{hw[0]} {path.name})",
                                "pass --image-size N or HxW to resize them all")
            if image.shape[0] > c:  # the first colour image: RGB from now on, for all splits
                out, c = {k: np.repeat(v, 3, axis=1) for k, v in out.items()}, 3
            elif image.shape[0] < c:
                image = np.repeat(image, c, axis=0)
            if split not in out:
                out[split] = np.empty((len(parts[split][1]), c, *want), dtype=np.uint8)
            out[split][i] = image
            if report is not None and (done % REPORT_EVERY == 0 or done == total):
                if done <= REPORT_EVERY:  # started once images decode: an error stays alone
                    report(0, total)
                report(done, total)
    return out

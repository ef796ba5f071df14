"""Packed stores (``packed:DIR``): a dataset decoded once into memory-mappable files.

A store is a directory::

    manifest.json        format, version, source, shape, class names, and per split its
                         image count, file names and SHA-256; written last, atomically
    train.npy            uint8 (N, C, H, W) in NumPy's .npy format (memory-mapped)
    train.labels.npy     int64 (N,), when the source has labels
    val.npy, test.npy    (and their labels) when the source has those splits

A directory without ``manifest.json`` never loads: an interrupted ``aezoo data pack``
leaves ``.pack-progress.json`` and ``.SPLIT.npy.part`` files, which the next pack into
the same directory continues (``aezoo.data.pack``). Loading checks the manifest against
each file's header and size (cheap); the SHA-256 are for ``aezoo data verify DIR``
(:func:`verify`) or ``sha256sum``, since hashing gigabytes on every run is not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aezoo.data.download import sha256_of
from aezoo.data.source import LoadContext, Progress, Splits
from aezoo.errors import DataError, UsageError
from aezoo.fileio import read_bounded

FORMAT = "aezoo-packed"
VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = ".pack-progress.json"
STAGING = ".pack-new"  # a re-pack (--force) builds here, beside the store it replaces
SPLITS = ("train", "val", "test")
MAX_MANIFEST = 16 * 2**20  # class names of a large dataset fit; a hostile file does not


def images_file(split: str) -> str:
    return f"{split}.npy"


def labels_file(split: str) -> str:
    return f"{split}.labels.npy"


def is_store(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _repack(root: Path) -> str:
    return f"pack it again: aezoo data pack SOURCE --out {root} --force"


def _bad(root: Path, detail: str) -> DataError:
    return DataError(f"{root / MANIFEST} is not a valid packed-store manifest ({detail})",
                     _repack(root))


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the store at ``root``, checked for what loading relies on."""
    path = root / MANIFEST
    if not path.is_file():
        if (root / STAGING / MANIFEST).is_file():
            raise DataError(f"{root} was interrupted while its store was replaced (the new "
                            f"store is whole in {root / STAGING})", f"rerun `aezoo data pack "
                            f"SOURCE --out {root} --force` to finish it")
        if (root / PROGRESS).is_file():
            raise DataError(f"{root} is an unfinished pack (interrupted before its manifest "
                            "was written)", f"rerun the same `aezoo data pack SOURCE --out "
                            f"{root}` to finish it")
        raise DataError(f"{root} has no {MANIFEST}: it is not a packed store",
                        "make one with `aezoo data pack SOURCE --out DIR`")
    if path.stat().st_size > MAX_MANIFEST:
        raise _bad(root, f"larger than {MAX_MANIFEST:,} bytes")
    try:
        info = json.loads(read_bounded(path, MAX_MANIFEST).decode("utf-8"))
    except OSError as exc:
        raise _bad(root, exc.strerror or str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _bad(root, f"not JSON: {type(exc).__name__}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise _bad(root, f"format is not {FORMAT}")
    if info.get("version") != VERSION:
        raise DataError(f"{root} is a packed store of version {info.get('version')!r}; this "
                        f"aezoo reads version {VERSION}", "pack it again with this aezoo")
    shape, splits = info.get("shape"), info.get("splits")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(v, int) and v > 0 for v in shape)):
        raise _bad(root, f"shape is {shape!r}")
    if not (isinstance(splits, dict) and "train" in splits and set(splits) <= set(SPLITS)):
        raise _bad(root, "splits must hold train, and only train, val and test")
    for split, entry in splits.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("count"), int)
                and entry["count"] > 0):
            raise _bad(root, f"splits.{split}.count is not a positive integer")
    names = info.get("class_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(n, str) for n in names)):
        raise _bad(root, "class_names is not a list of strings")
    return info


def load_store(root: Path) -> Splits:
    """The splits of the store at ``root``: images memory-mapped, labels in memory."""
    from aezoo.data.arrays import read_npy

    info = read_manifest(root)
    shape = tuple(info["shape"])
    out: dict[str, Any] = {"class_names": info.get("class_names")}
    for split, entry in info["splits"].items():
        path = root / images_file(split)
        if not path.exists():  # there but not a file: check_npy_header says what it is
            raise DataError(f"packed store {root} lacks {path.name}", _repack(root))
        images = read_npy(path, _repack(root), mmap_mode="r")
        want = (entry["count"], *shape)
        if images.dtype != np.uint8 or tuple(images.shape) != want:
            raise DataError(f"{path} holds {images.dtype} {tuple(images.shape)}, but the "
                            f"manifest says uint8 {want}", _repack(root))
        out[split] = images
        if entry.get("labels"):
            out[f"{split}_labels"] = read_npy(root / labels_file(split), _repack(root),
                                              expect=(int(entry["count"]),))
    return Splits(**out)


def load_packed(ctx: LoadContext) -> Splits:
    """``packed:DIR``: a store written by ``aezoo data pack``."""
    root = Path(ctx.argument or "").expanduser()
    if not root.exists():
        raise UsageError(f"packed store {root} does not exist", "check the path after packed:")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder", "a packed store is the directory "
                         "`aezoo data pack` wrote")
    return load_store(root)


def verify(root: Path, progress: Progress | None = None) -> tuple[list[str], list[str], int]:
    """Read every file of the store at ``root``: (the files whose SHA-256 differs from the
    manifest's, the files checked, the bytes read). A store that does not load
    (``load_store``'s checks of headers and sizes) is refused with their error first, and
    one whose manifest lists a file without its digest as damaged."""
    load_store(root)
    info = read_manifest(root)
    bad, checked, read = [], [], 0
    for split, entry in info["splits"].items():
        files = [("sha256", images_file(split))]
        if entry.get("labels"):
            files.append(("labels_sha256", labels_file(split)))
        for key, name in files:
            if not isinstance(entry.get(key), str):
                raise _bad(root, f"no SHA-256 for {name}")
            checked.append(name)
            read += (root / name).stat().st_size
            if sha256_of(root / name, progress) != entry[key]:
                bad.append(name)
    return bad, checked, read

"""What ``aezoo data pack`` reads (``aezoo.data.pack`` writes it): each split of a source
as a reader of image chunks, its labels, and a fingerprint of what is packed (file names,
sizes and times; array digests; a streamed split's own fingerprint; the conversions), by
which an interrupted pack knows it may resume."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from aezoo.data import packed
from aezoo.data.source import LoadContext, Progress, Splits
from aezoo.data.streamed import StreamedSplits, is_iterable
from aezoo.errors import DataError
from aezoo.fileio import file_identity
from aezoo.specs import DataSpec

HASH_CHUNK = 1024  # images hashed at a time: a memory map is read, never copied whole


@dataclass
class Part:
    """One split to pack: ``read(start, stop)`` gives uint8 (k, C, H, W) images."""

    count: int
    read: Callable[[int, int], np.ndarray]
    labels: np.ndarray | None


def plan(spec: DataSpec, progress: Progress | None
          ) -> tuple[dict[str, Part], list[str] | None, str]:
    """Each split of the source as a reader of chunks, its class names, its fingerprint."""
    from aezoo.data.base import _fetch
    from aezoo.data.catalog import resolve, source_dir, source_params
    from aezoo.data.folder import FolderImages

    found = resolve(spec.name)
    ctx = LoadContext(found.source, found.argument, source_dir(found.source),
                      image_size=spec.image_size, channels=spec.channels,
                      progress=progress, fetcher=_fetch,
                      params=source_params(found, spec.params))
    splits = cast(Callable[[LoadContext], Any], found.source.load)(ctx)
    what: dict[str, Any] = {"source": spec.name, "image_size": spec.image_size,
                            "channels": spec.channels}
    if spec.params:  # only where given: the fingerprints of earlier packs stay the same
        what["params"] = spec.params
    if isinstance(splits, Splits) and isinstance(splits.train, FolderImages):
        part: Callable[..., Part] = functools.partial(_folder_part, first=[])
    elif isinstance(splits, StreamedSplits):
        part = _streamed_part
    elif isinstance(splits, Splits):
        part = _array_part
    else:
        raise DataError(f"dataset {spec.name} returned a {type(splits).__name__}, not Splits",
                        f"report it to the authors of {found.entry.dist}")
    parts = {split: part(splits, split, data, spec, what) for split in packed.SPLITS
             if (data := getattr(splits, split)) is not None}
    names = None if splits.class_names is None else list(splits.class_names)
    fingerprint = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode())
    return parts, names, fingerprint.hexdigest()


def _labels(splits: Any, split: str, n: int, name: str) -> np.ndarray | None:
    from aezoo.data.arrays import to_labels

    return to_labels(getattr(splits, f"{split}_labels"), n, f"{name} {split} labels")


def _folder_part(splits: Splits, split: str, files: Any, spec: DataSpec,
                 what: dict[str, Any], first: list[tuple[Path, tuple[int, int]]]) -> Part:
    """``first`` (shared by the splits): the first image read and its size, every image's."""
    from aezoo.data.folder import decode_splits

    what[split] = [(str(p.relative_to(files.root)), *file_identity(p)) for p in files.paths]

    def read(begin: int, stop: int) -> np.ndarray:
        out = decode_splits({"x": (files, np.arange(begin, stop))}, spec.image_size,
                            spec.channels, like=first[0] if first else None)["x"]
        if not first:
            first.append((files.paths[begin], (int(out.shape[2]), int(out.shape[3]))))
        return out

    return Part(len(files), read, _labels(splits, split, len(files), spec.name))


def _digest(array: np.ndarray | None) -> str | None:
    """SHA-256 of an array's bytes, shape and dtype, hashed in chunks of images (a memory
    map is read, never copied whole): a resumed pack of arrays checks their content."""
    if array is None:
        return None
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    for begin in range(0, len(array), HASH_CHUNK):
        digest.update(np.ascontiguousarray(array[begin:begin + HASH_CHUNK]).tobytes())
    return digest.hexdigest()


def _identity(data: Any) -> Any:
    """What identifies a streamed split's content: its own ``fingerprint()`` (aezoo's
    streamed sources have one: files' sizes and times, a dataset's fingerprint), else
    only its type and length (a plugin's split without one: a changed source of the same
    length is not noticed, so pack such sources again with --force)."""
    fingerprint = getattr(data, "fingerprint", None)
    if callable(fingerprint):
        return fingerprint()
    return [type(data).__qualname__, len(data)]


def _array_part(splits: Splits, split: str, images: Any, spec: DataSpec,
                what: dict[str, Any]) -> Part:
    from aezoo.data.arrays import convert_channels, resize, to_images

    images = to_images(images, f"{spec.name} {split} split")
    labels = _labels(splits, split, len(images), spec.name)
    what[split] = [_digest(images), _digest(labels)]
    if spec.channels is not None:
        images = convert_channels(images, spec.channels, f"{spec.name} {split} split")
    if spec.image_size is not None:
        images = resize(images, spec.image_size)
    what[split].append([int(v) for v in images.shape])
    return Part(len(images), lambda begin, stop: np.ascontiguousarray(images[begin:stop]),
                labels)


def _streamed_part(splits: StreamedSplits, split: str, data: Any, spec: DataSpec,
                   what: dict[str, Any]) -> Part:
    import torch

    what[split] = _identity(data)
    state: dict[str, Any] = {"it": None, "at": -1}  # an iterable split's iterator

    def read(begin: int, stop: int) -> np.ndarray:
        if not is_iterable(data):
            return torch.stack([data[i] for i in range(begin, stop)]).numpy()
        if state["at"] != begin:
            data.set_epoch(1, 0)
            data.skip(begin)
            state["it"] = iter(data)
        it: Iterator[Any] = state["it"]
        images = [next(it) for _ in range(begin, stop)]
        state["at"] = stop
        return torch.stack(images).numpy()

    labels = None if is_iterable(data) else _labels(splits, split, len(data), "source")
    what[f"{split}_labels"] = _digest(labels)
    return Part(len(data), read, labels)

"""The dataset container and ``load_dataset``: a DataSpec -> train/val(/test) arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from aezoo.data.source import DatasetSource, LoadContext, Progress, Shape, Splits
from aezoo.data.streamed import Indexed, MapSplit, StreamedDataset, StreamedSplits, is_iterable
from aezoo.errors import AezooError, DataError, summary
from aezoo.protocols import format_shape
from aezoo.specs import DataSpec


@dataclass(frozen=True)
class ArrayDataset:
    """Train and validation images as uint8 ``(N, C, H, W)`` arrays, labels when known.

    ``test`` is the dataset's official test split where it has one; training and model
    selection never look at it.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    test: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: list[str] | None = None  # class_names[k] names label k, where known

    @property
    def shape(self) -> Shape:
        c, h, w = self.train.shape[1:]
        return (int(c), int(h), int(w))

    def splits(self) -> dict[str, int]:
        """Image count per split."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return {part: len(images) for part, images in parts.items() if images is not None}


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


def split_indices(n: int, labels: np.ndarray | None, val_fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified by label where labels exist (and every side gets images), else random
    with at least one image on each side."""
    if labels is not None:
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        if len(train_idx) and len(val_idx):
            return train_idx, val_idx
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    return perm[n_val:], perm[:n_val]


def carve(name: str, n: int, labels: np.ndarray | None, given_val: bool,
          val_fraction: float, seed: int, limit: int | None
          ) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of a source's train split to train on (at most ``limit``), and the rows
    carved from it for validation (None where the source gave a validation split). Every
    assembler (arrays, folders, streamed) carves here: a given validation split leaves
    train in a seeded order (sources often store it sorted by class, and ``--limit`` must
    not take the first classes only); else the carve is stratified by label."""
    if given_val:
        return np.random.default_rng(seed).permutation(n)[:limit], None
    if n < 2:
        raise DataError(f"dataset {name} has {n} image; training needs at least 2 "
                        "(one for validation)", "add images")
    train_idx, val_idx = split_indices(n, labels, val_fraction, seed)
    return train_idx[:limit], val_idx


def _pick(labels: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if labels is None else labels[rows]


def declared_shape(spec: DataSpec) -> Shape | None:
    """The shape ``spec`` will load, when known without loading (to check a model early)."""
    from aezoo.data.catalog import resolve

    source = resolve(spec.name).source
    if source.shape is None:
        return None
    c, h, w = source.shape
    h, w = spec.image_size or (h, w)
    return (spec.channels or c, h, w)


def load_dataset(spec: DataSpec, progress: Progress | None = None,
                 offline: bool = False, stream: bool | None = None
                 ) -> ArrayDataset | StreamedDataset:
    """The dataset ``spec`` names, with its validation split carved: uint8 arrays
    (possibly memory-mapped), or streamed splits where the source streams.

    Downloads (verified) what is not cached yet; ``progress`` is told how far it got.
    """
    from aezoo.data.catalog import resolve, source_dir, source_params

    found = resolve(spec.name)
    ctx = LoadContext(found.source, found.argument, source_dir(found.source),
                      image_size=spec.image_size, channels=spec.channels,
                      progress=progress, offline=offline, fetcher=_fetch, stream=stream,
                      skip_bad=spec.skip_bad, val_fraction=spec.val_fraction,
                      split_seed=spec.split_seed, params=source_params(found, spec.params))
    try:
        splits = cast(Callable[[LoadContext], Splits | StreamedSplits], found.source.load)(ctx)
    except (AezooError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a plugin's loader: say whose, keep the traceback for debug
        raise DataError(f"dataset {spec.name} ({found.entry.dist} {found.entry.version}) "
                        f"failed to load: {summary(exc)}",
                        "rerun with AEZOO_DEBUG=1 for the traceback and report it") from exc
    if isinstance(splits, StreamedSplits):
        return assemble_streamed(spec.name, splits, spec.val_fraction, spec.split_seed,
                                 spec.limit)
    if not isinstance(splits, Splits):
        raise DataError(f"dataset {spec.name} returned a {type(splits).__name__}, not Splits",
                        f"report it to the authors of {found.entry.dist}")
    return assemble(spec, splits, progress)


def _fetch(source: DatasetSource, directory: Path, progress: Progress | None,
           offline: bool) -> dict[str, Path]:
    from aezoo.data.download import ensure_files

    return ensure_files(source, directory, progress=progress, offline=offline)


def assemble(spec: DataSpec, splits: Splits, progress: Progress | None = None) -> ArrayDataset:
    """Validate, convert channels/size, carve the validation split, apply the limit. A
    folder's carve and limit pick the files first, and only those are decoded (each
    opened once), already at ``image_size`` and ``channels``."""
    from aezoo.data.arrays import convert_channels, resize, to_images, to_labels
    from aezoo.data.folder import FolderImages, decode_splits
    from aezoo.data.mapped import MappedArray, is_mapped

    files = isinstance(splits.train, FolderImages)
    parts: dict[str, tuple[Any, np.ndarray | None]] = {}
    for part in ("train", "val", "test"):
        images = getattr(splits, part)
        if images is None:
            continue
        what = f"{spec.name} {part} split"
        images = images if files else to_images(images, what)
        labels = to_labels(getattr(splits, f"{part}_labels"), len(images), f"{what} labels")
        if not files and spec.channels is not None:
            images = convert_channels(images, spec.channels, what)
        if not files and spec.image_size is not None:
            images = resize(images, spec.image_size)
        if is_mapped(images):  # read through the map: the carve and limit are indices
            images = MappedArray(images)
        parts[part] = (images, labels)
    train, train_labels = parts["train"]
    for part, (images, _) in parts.items():
        if not files and images.shape[1:] != train.shape[1:]:
            raise DataError(f"dataset {spec.name}: {part} images are "
                            f"{format_shape(images.shape[1:])} but train images are "
                            f"{format_shape(train.shape[1:])}", "pass --image-size to resize all")
    rows, carved = carve(spec.name, len(train), train_labels, "val" in parts,
                         spec.val_fraction, spec.split_seed, spec.limit)
    # (images, labels, rows) of each split; rows None: the split whole
    picks = {"train": (train, train_labels, rows), "val": (
        (train, train_labels, carved) if carved is not None else (*parts["val"], None))}
    if "test" in parts:
        picks["test"] = (*parts["test"], None)
    if files:
        images = decode_splits({k: (x, np.arange(len(x)) if i is None else i)
                                for k, (x, _, i) in picks.items()}, spec.image_size,
                               spec.channels, None if progress is None else
                               lambda done, total: progress("decoding images", done, total,
                                                            "images"))
    else:
        images = {k: _owned(x if i is None else x[i]) for k, (x, _, i) in picks.items()}
    got = {k: y if i is None else _pick(y, i) for k, (_, y, i) in picks.items()}
    return ArrayDataset(spec.name, images["train"], images["val"], got["train"], got["val"],
                        images.get("test"), got.get("test"),
                        None if splits.class_names is None else list(splits.class_names))


def _owned(images: Any) -> Any:
    """Contiguous and writable (not a view of a cache or a file buffer); a MappedArray
    stays one (aezoo.data.mapped)."""
    from aezoo.data.mapped import MappedArray

    if isinstance(images, MappedArray):
        return images
    return np.require(images, np.uint8, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])


def assemble_streamed(name: str, splits: StreamedSplits, val_fraction: float,
                      split_seed: int, limit: int | None) -> StreamedDataset:
    """Carve the validation split (by index, stratified by label) when the source gave
    none, and apply ``limit``; like :func:`assemble` for arrays."""
    from aezoo.data.arrays import to_labels

    def labels(part: str, split: Any) -> np.ndarray | None:
        values = getattr(splits, f"{part}_labels")
        if values is None or split is None or is_iterable(split):
            return None
        return to_labels(values, len(split), f"{name} {part} labels")

    def view(split: Any) -> Any:  # a map-style split seen through indices
        return split if split is None or is_iterable(split) else Indexed(split)

    for part in ("train", "val", "test"):
        split = getattr(splits, part)
        if split is not None and not (is_iterable(split) or isinstance(split, MapSplit)):
            raise DataError(f"dataset {name}: its {part} split is a {type(split).__name__}, "
                            "neither a map-style nor an iterable split",
                            "return torch Datasets as docs/data.md describes")
    train_labels = labels("train", splits.train)
    val, val_labels = view(splits.val), labels("val", splits.val)
    if is_iterable(splits.train):
        if splits.val is None:
            raise DataError(f"dataset {name} streams its train split but has no validation "
                            "split", "give the source a val split")
        train: Any = splits.train
    else:
        rows, carved = carve(name, len(splits.train), train_labels, splits.val is not None,
                             val_fraction, split_seed, limit)
        whole = Indexed(splits.train)
        if carved is not None:
            val, val_labels = whole.take(carved), _pick(train_labels, carved)
        train, train_labels = whole.take(rows), _pick(train_labels, rows)
    names = list(splits.class_names) if splits.class_names is not None else None
    return StreamedDataset(name, tuple(splits.shape), train, val,  # type: ignore[arg-type]
                           view(splits.test), train_labels, val_labels,
                           labels("test", splits.test), names,
                           limit if is_iterable(train) else None)

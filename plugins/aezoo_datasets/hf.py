"""``hf:PATH_OR_NAME[:SPLIT][?image=COL&label=COL]``: a Hugging Face ``datasets`` dataset.

PATH is a directory written by ``save_to_disk``, a parquet file, or a directory of
parquet (or image) files; anything else is a Hub name, loaded by ``datasets`` itself
(its cache and ``HF_DATASETS_OFFLINE`` apply). Splits: ``train``, ``validation`` (``val``,
``valid``) and ``test`` where the dataset has them; ``:SPLIT`` trains on that one split
alone (validation carved from it). The image column is the first ``Image`` feature (else
``image``/``img``), the label column the first ``ClassLabel`` (else ``label``/``labels``),
whose names become the class names; ``?image=`` / ``?label=`` pick others. Rows are
read through the dataset's memory-mapped Arrow files and decoded in DataLoader workers.
Needs ``pip install 'aezoo[hf]'``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import torch
from torch.utils.data import Dataset

from aezoo.data import images as decoding
from aezoo.data.arrays import convert_channels, resize, to_images, to_labels
from aezoo.data.download import offline_mode
from aezoo.data.source import LoadContext
from aezoo.data.stream_folder import BadImages, skipping
from aezoo.data.streamed import StreamedSplits
from aezoo.errors import DataError, UsageError, summary
from aezoo.fileio import MAX_IMAGE_BYTES, file_identity, read_bounded
from aezoo.specs import short_repr

SPLITS = {"train": "train", "validation": "val", "val": "val", "valid": "val",
          "test": "test"}
IMAGE_NAMES = ("image", "img", "images", "picture")
LABEL_NAMES = ("label", "labels", "class", "target")
_SPLIT_NAME = re.compile(r"^[A-Za-z][\w.\[\]%+-]*$")


def _datasets() -> Any:
    try:
        import datasets
    except ModuleNotFoundError:
        raise UsageError("hf: needs the Hugging Face datasets library, which is not installed",
                         "pip install 'aezoo[hf]'") from None
    except ImportError as exc:  # installed, but it (or pyarrow under it) refuses this setup
        raise UsageError(f"hf: the Hugging Face datasets library does not import here "
                         f"({summary(exc, with_type=False)})",
                         "fix what it names (recent pyarrow needs numpy >= 2)") from None
    return datasets


def parse(argument: str) -> tuple[str, str | None, dict[str, str]]:
    """``PATH_OR_NAME[:SPLIT][?k=v&...]`` -> (path or name, split, options)."""
    target, _, query = argument.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"image", "label"})
    if unknown:
        raise UsageError(f"hf: unknown option {unknown[0]}", "use ?image=COLUMN&label=COLUMN")
    head, sep, tail = target.rpartition(":")
    if sep and head and _SPLIT_NAME.match(tail) and not Path(target).expanduser().exists():
        return head, tail, options
    return target, None, options


def _load(target: str) -> Any:
    """A Dataset or DatasetDict, from disk when ``target`` is a path, else the Hub."""
    datasets = _datasets()
    if offline_mode():  # AEZOO_OFFLINE: datasets' own offline mode (its cache only)
        import huggingface_hub.constants

        datasets.config.HF_DATASETS_OFFLINE = True
        huggingface_hub.constants.HF_HUB_OFFLINE = True
    path = Path(target).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists()
                              or (path / "dataset_info.json").exists()
                              and (path / "state.json").exists()):
            return datasets.load_from_disk(str(path))
        if path.is_file() and path.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files=str(path))
        if path.is_dir():
            return datasets.load_dataset(str(path))
        if target.startswith((".", "/", "~")) or path.suffix in (".parquet", ".arrow"):
            raise UsageError(f"hf: {target} does not exist",
                             "give a save_to_disk directory, a .parquet file or a Hub name")
        return datasets.load_dataset(target)
    except UsageError:
        raise
    except Exception as exc:  # datasets' own errors: not found, offline, bad files
        raise DataError(f"cannot load {target} with datasets ({summary(exc)})",
                        "check the name or path; without a network, save the dataset with "
                        "save_to_disk and use hf:PATH (HF_DATASETS_OFFLINE=1 reads the "
                        "cache only)") from None


def _column(features: Any, wanted: str | None, kind: str, what: str) -> str | None:
    datasets = _datasets()
    feature_type, names = ((datasets.Image, IMAGE_NAMES) if kind == "image"
                           else (datasets.ClassLabel, LABEL_NAMES))
    if wanted is not None:
        if wanted not in features:
            raise UsageError(f"{what} has no column '{wanted}' (columns: "
                             f"{', '.join(features)})", f"pick one with ?{kind}=COLUMN")
        return wanted
    typed = (str(name) for name, feature in features.items() if isinstance(feature, feature_type))
    return next(typed, next((name for name in names if name in features), None))


class HFImages(Dataset[torch.Tensor]):
    """Map-style: row ``i``'s image as uint8 ``(C, H, W)``, decoded by aezoo's rules."""

    def __init__(self, table: Any, column: str, what: str, size: tuple[int, int],
                 channels: int, bad: BadImages | None = None) -> None:
        self.table, self.column, self.what = table, column, what
        self.size, self.channels, self.bad = size, channels, bad

    def __len__(self) -> int:
        return len(self.table)

    def fingerprint(self) -> list[Any]:
        """What identifies the rows (``aezoo data pack`` resumes only the same ones): the
        dataset's public name, config and split, its column, and its files' sizes and times
        (its ``_fingerprint`` is private to ``datasets``)."""
        files = [file_identity(f.get("filename", "")) for f in
                 getattr(self.table, "cache_files", None) or [] if isinstance(f, dict)]
        info = getattr(self.table, "info", None)
        named = [str(getattr(info, key, None)) for key in ("dataset_name", "config_name")]
        return [*named, str(getattr(self.table, "split", None)), self.column, len(self), files]

    def __getitem__(self, index: int) -> torch.Tensor:
        return skipping(index, len(self), self.read, lambda i: f"{self.what} row {i}",
                        self.bad)

    def read(self, row: int) -> np.ndarray:
        value = self.table[row][self.column]
        where = f"{self.what} row {row}"
        data = _encoded(value, where)
        if data is not None:
            return decoding.decode(data, where, self.size, self.channels)
        return _array_image(_image_array(value, where, self.column), where, self.size,
                            self.channels)


def _encoded(value: Any, where: str) -> bytes | None:
    """An encoded image's bytes: an Image feature (not decoded) ``{"bytes", "path"}`` or a
    plain binary value; None for a value that may be pixels. A path a row names is read
    only if it is a regular file of at most MAX_IMAGE_BYTES (``/dev/zero`` never ends, a
    3 GiB file once took 14 s and 3.4 GB before Pillow said it was no image)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, dict):
        return None
    data = value.get("bytes")
    path = value.get("path")
    if data is None and path:
        try:
            data = read_bounded(path, MAX_IMAGE_BYTES)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            raise decoding.unreadable(f"{where} ({path})", exc) from None
    if data is None:
        raise DataError(f"{where} has no image", "remove the row")
    return bytes(data)


def _image_array(value: Any, where: str, column: str) -> np.ndarray:
    """Pixels stored as nested lists / an array, (H, W) or (H, W, C) numbers; anything
    else in the image column is named in one line."""
    fix = "pick the image column with ?image=COLUMN"
    if value is None or isinstance(value, (str, int, float, bool)):
        kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
        what = ("nothing (null)" if value is None
                else f"{kind[type(value)]} ({short_repr(value)})" if type(value) in kind
                else f"a {type(value).__name__} ({short_repr(value)})")
        raise DataError(f"{where}: column '{column}' holds {what}, not an image", fix)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise DataError(f"{where}: column '{column}' holds ragged lists (rows of different "
                        "lengths), not an image", fix) from None
    if array.dtype.kind not in "iubf":
        raise DataError(f"{where}: column '{column}' holds values of type {array.dtype}, "
                        "not pixels", fix)
    if array.ndim not in (2, 3) or 0 in array.shape or (
            array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise DataError(f"{where}: column '{column}' holds an array of shape "
                        f"{list(array.shape)}, not an image (H, W) or (H, W, C)", fix)
    return array


def _array_image(array: np.ndarray, where: str, size: tuple[int, int],
                 channels: int) -> np.ndarray:
    """An image stored as nested lists / an array (H, W) or (H, W, C)."""
    images = to_images(array[None], where)
    images = convert_channels(images, channels, where)
    return np.ascontiguousarray(resize(images, size)[0])


def load_hf(ctx: LoadContext) -> StreamedSplits:
    """The dataset's splits as map-style datasets over its Arrow tables."""
    datasets = _datasets()
    target, only, options = parse(ctx.argument or "")
    loaded = _load(target)
    if not isinstance(loaded, datasets.DatasetDict):
        tables: dict[str, Any] = {"train": loaded}
    elif only is not None:
        if only not in loaded:
            raise UsageError(f"hf:{target} has no split '{only}' (splits: "
                             f"{', '.join(loaded)})", f"write hf:{target}:SPLIT")
        tables = {"train": loaded[only]}
    else:
        tables = {SPLITS[k]: v for k, v in loaded.items() if k in SPLITS}
        if "train" not in tables:
            raise UsageError(f"hf:{target} has no train split (splits: "
                             f"{', '.join(loaded)})", f"write hf:{target}:SPLIT")
    first = tables["train"]
    what = f"hf:{target}"
    image = _column(first.features, options.get("image"), "image", what)
    if image is None:
        raise UsageError(f"{what} has no image column (columns: {', '.join(first.features)})",
                         "pick one with ?image=COLUMN")
    label = _column(first.features, options.get("label"), "label", what)
    if isinstance(first.features[image], datasets.Image):
        tables = {k: t.cast_column(image, datasets.Image(decode=False)) for k, t in
                  tables.items()}
    shape = _shape(tables["train"], image, what, ctx)
    bad = BadImages() if ctx.skip_bad else None
    out: dict[str, Any] = {}
    for part, table in tables.items():
        out[part] = HFImages(table, image, f"{what} {part}", shape[1:], shape[0], bad)
        if label is not None:
            out[f"{part}_labels"] = to_labels(table[label], len(table),
                                              f"{what} {part} column '{label}'")
    feature = first.features[label] if label is not None else None
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return StreamedSplits(shape=shape, class_names=names, **out)


def _shape(table: Any, column: str, what: str, ctx: LoadContext) -> tuple[int, int, int]:
    """(C, H, W) from the first row (or --channels / --image-size)."""
    if len(table) == 0:
        raise DataError(f"{what} has no rows", "check the dataset")
    value = table[0][column]
    where = f"{what} row 0"
    data = _encoded(value, where)
    if data is not None:
        header = decoding.header(data, where)
        size, grey = header.size, header.grey
    else:
        array = _image_array(value, where, column)
        size, grey = array.shape[:2], array.ndim == 2 or array.shape[2] in (1, 2)
    channels = ctx.channels or (1 if grey else 3)
    h, w = ctx.image_size or size
    return (channels, int(h), int(w))

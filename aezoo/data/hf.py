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

from aezoo._io import file_identity, open_regular
from aezoo.data import images as decoding
from aezoo.data.download import offline_mode
from aezoo.data.source import LoadContext
from aezoo.data.stream_folder import BadImages, skipping
from aezoo.data.streamed import StreamedSplits
from aezoo.errors import DataError, UsageError, summary

SPLITS = {"train": "train", "validation": "val", "val": "val", "valid": "val",
          "test": "test"}
IMAGE_NAMES = ("image", "img", "images", "picture")
LABEL_NAMES = ("label", "labels", "class", "target")
_SPLIT_NAME = re.compile(r"^[A-Za-z][\w.\[\]%+-]*$")
OPTIONS = ("image", "label")
INSTALL = "pip install 'aezoo[hf]'"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UsageError("hf: needs the Hugging Face datasets library, which is not installed",
                         INSTALL) from None
    return datasets


def parse(argument: str) -> tuple[str, str | None, dict[str, str]]:
    """``PATH_OR_NAME[:SPLIT][?k=v&...]`` -> (path or name, split, options)."""
    target, _, query = argument.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
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


def _column(features: Any, wanted: str | None, kind: str, names: tuple[str, ...],
            what: str) -> str | None:
    datasets = _datasets()
    feature_type = datasets.Image if kind == "image" else datasets.ClassLabel
    if wanted is not None:
        if wanted not in features:
            raise UsageError(f"{what} has no column '{wanted}' (columns: "
                             f"{', '.join(features)})", f"pick one with ?{kind}=COLUMN")
        return wanted
    for name, feature in features.items():
        if isinstance(feature, feature_type):
            return str(name)
    for name in names:
        if name in features:
            return name
    return None


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
        dataset's own fingerprint, its column, and its files' sizes and times."""
        files = [file_identity(f.get("filename", "")) for f in
                 getattr(self.table, "cache_files", None) or [] if isinstance(f, dict)]
        return [getattr(self.table, "_fingerprint", None), self.column, len(self), files]

    def __getitem__(self, index: int) -> torch.Tensor:
        return skipping(index, len(self), self.read, lambda i: f"{self.what} row {i}",
                        self.bad)

    def read(self, row: int) -> np.ndarray:
        value = self.table[row][self.column]
        where = f"{self.what} row {row}"
        if isinstance(value, dict):  # an Image feature, not decoded: {"bytes", "path"}
            data = value.get("bytes")
            if data is None and value.get("path"):
                try:
                    with open_regular(value["path"]) as f:
                        data = f.read()
                except OSError as exc:
                    raise decoding.unreadable(f"{where} ({value['path']})", exc) from None
            if data is None:
                raise DataError(f"{where} has no image", "remove the row")
            return decoding.decode(data, where, self.size, self.channels)
        return _array_image(value, where, self.size, self.channels)


def _array_image(value: Any, where: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """An image stored as nested lists / an array (H, W) or (H, W, C)."""
    from aezoo.data.arrays import convert_channels, resize, to_images

    array = np.asarray(value)
    if array.ndim not in (2, 3):
        raise DataError(f"{where} holds a {array.ndim}-d value, not an image",
                        "pick the image column with ?image=COLUMN")
    images = to_images(array[None], where)
    images = convert_channels(images, channels, where)
    return np.ascontiguousarray(resize(images, size)[0])


def load_hf(ctx: LoadContext) -> StreamedSplits:
    """The dataset's splits as map-style datasets over its Arrow tables."""
    datasets = _datasets()
    target, only, options = parse(ctx.argument or "")
    loaded = _load(target)
    tables: dict[str, Any] = {}
    if isinstance(loaded, datasets.DatasetDict):
        if only is not None:
            if only not in loaded:
                raise UsageError(f"hf:{target} has no split '{only}' (splits: "
                                 f"{', '.join(loaded)})", f"write hf:{target}:SPLIT")
            tables["train"] = loaded[only]
        else:
            tables = {SPLITS[k]: v for k, v in loaded.items() if k in SPLITS}
            if "train" not in tables:
                raise UsageError(f"hf:{target} has no train split (splits: "
                                 f"{', '.join(loaded)})", f"write hf:{target}:SPLIT")
    else:
        tables["train"] = loaded
    first = tables["train"]
    what = f"hf:{target}"
    image = _column(first.features, options.get("image"), "image", IMAGE_NAMES, what)
    if image is None:
        raise UsageError(f"{what} has no image column (columns: {', '.join(first.features)})",
                         "pick one with ?image=COLUMN")
    label = _column(first.features, options.get("label"), "label", LABEL_NAMES, what)
    if isinstance(first.features[image], datasets.Image):
        tables = {k: t.cast_column(image, datasets.Image(decode=False)) for k, t in
                  tables.items()}
    shape = _shape(tables["train"], image, what, ctx)
    bad = BadImages() if ctx.skip_bad else None
    out: dict[str, Any] = {}
    for part, table in tables.items():
        out[part] = HFImages(table, image, f"{what} {part}", shape[1:], shape[0], bad)
        if label is not None:
            out[f"{part}_labels"] = np.asarray(table[label], dtype=np.int64)
    names = None
    if label is not None and isinstance(first.features[label], datasets.ClassLabel):
        names = list(first.features[label].names)
    return StreamedSplits(shape=shape, class_names=names, **out)


def _shape(table: Any, column: str, what: str, ctx: LoadContext) -> tuple[int, int, int]:
    """(C, H, W) from the first row (or --channels / --image-size)."""
    if len(table) == 0:
        raise DataError(f"{what} has no rows", "check the dataset")
    value = table[0][column]
    if isinstance(value, dict):
        probe = HFImages(table, column, what, (1, 1), 3)
        data = value.get("bytes")
        if data is None:
            array = probe.read(0)  # by path: decode it once
            header = decoding.Header(array.shape[1:], False)
        else:
            header = decoding.header(data, f"{what} row 0")
        size, grey = header.size, header.grey
    else:
        array = np.asarray(value)
        size, grey = array.shape[:2], array.ndim == 2 or array.shape[2] in (1, 2)
    channels = ctx.channels or (1 if grey else 3)
    h, w = ctx.image_size or size
    return (channels, int(h), int(w))

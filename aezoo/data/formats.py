"""The downloadable benchmarks' file formats, IDX (the MNIST family) and CIFAR-10 binary,
and their loaders (the sources' ``load``).

Both are plain bytes with a fixed layout; nothing here unpickles or extracts to disk.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tarfile
import zlib
from pathlib import Path
from typing import IO, cast

import numpy as np

from aezoo.data.source import LoadContext, Splits
from aezoo.errors import DataError
from aezoo.fileio import check_regular, open_regular

IDX_UBYTE = 0x08
MAX_IDX_BYTES = 2**31  # EMNIST's largest file holds 0.64 GB; a header may claim 2**128
CIFAR_SIDE = 32
CIFAR_RECORD = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # label byte, then R, G, B planes
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = "test_batch.bin"


def load_idx_dataset(ctx: LoadContext) -> Splits:
    """MNIST, Fashion-MNIST, KMNIST: the same four IDX files, the standard 60k/10k split."""
    paths = ctx.fetch()
    train = _pair(paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"])
    test = _pair(paths["t10k-images-idx3-ubyte.gz"], paths["t10k-labels-idx1-ubyte.gz"])
    return Splits(train=train[0], train_labels=train[1], test=test[0], test_labels=test[1])


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{images_path} {images.shape} and {labels_path} {labels.shape} "
                        "do not match", "delete both; they are downloaded again on next use")
    return images[:, None], labels


def load_cifar10(ctx: LoadContext) -> Splits:
    """CIFAR-10's 50k/10k split from the binary archive (never the pickled version)."""
    train, train_labels, test, test_labels = read_cifar10(ctx.fetch()["cifar-10-binary.tar.gz"])
    return Splits(train=train, train_labels=train_labels, test=test, test_labels=test_labels)


def _refetch(path: Path) -> str:
    return f"delete {path}; it is downloaded and verified again on next use"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed when its name ends in .gz) of unsigned bytes. The
    header's dimensions are checked (exactly, in Python integers) before the data is
    read: at most MAX_IDX_BYTES, and never more than they declare (a gzip bomb stops
    there)."""
    try:
        with open_regular(path) as raw:
            size = os.fstat(raw.fileno()).st_size
            f = gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0":
                raise DataError(f"{path} is not an IDX file", _refetch(path))
            dtype, ndim = head[2], head[3]
            if dtype != IDX_UBYTE:
                raise DataError(f"{path} holds IDX type 0x{dtype:02x}, not unsigned bytes",
                                _refetch(path))
            packed = f.read(4 * ndim)
            if ndim == 0 or len(packed) < 4 * ndim:
                raise DataError(f"{path} has a truncated IDX header", _refetch(path))
            dims = struct.unpack(f">{ndim}I", packed)
            expected = math.prod(dims)
            if expected > MAX_IDX_BYTES:
                raise DataError(f"{path} declares {expected:,} values {dims}, over the limit "
                                f"of {MAX_IDX_BYTES:,}", _refetch(path))
            if f is raw and size - 4 - 4 * ndim != expected:  # before reading a byte
                raise DataError(f"{path} should hold {expected:,} values {dims} but holds "
                                f"{size - 4 - 4 * ndim:,}", _refetch(path))
            data = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path} ({exc})", _refetch(path)) from None
    if len(data) != expected:
        held = f"{len(data):,}" if len(data) <= expected else "more"
        raise DataError(f"{path} should hold {expected:,} values {dims} but holds {held}",
                        _refetch(path))
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_cifar10(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``cifar-10-binary.tar.gz`` -> train images, train labels, test images, test labels.

    Images are uint8 ``(N, 3, 32, 32)``: the binary format already stores each image as
    its R, G and B planes, row-major. The members are read in memory, never extracted.
    """
    wanted = {*CIFAR_TRAIN, CIFAR_TEST}
    blobs: dict[str, bytes] = {}
    try:
        check_regular(path)
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:  # a file: extractfile never gives None
                    blobs[base] = cast(IO[bytes], tar.extractfile(member)).read()
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise DataError(f"cannot read {path} ({exc})", _refetch(path)) from None
    missing = sorted(wanted - set(blobs))
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}", _refetch(path))
    train = [_cifar_records(blobs[name], f"{path}:{name}") for name in CIFAR_TRAIN]
    test_images, test_labels = _cifar_records(blobs[CIFAR_TEST], f"{path}:{CIFAR_TEST}")
    return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
            test_images, test_labels)


def _cifar_records(blob: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not blob or len(blob) % CIFAR_RECORD:
        raise DataError(f"{what} is {len(blob):,} bytes, not a whole number of "
                        f"{CIFAR_RECORD}-byte records", "the archive is damaged: delete it")
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].copy()
    if labels.max() > 9:
        raise DataError(f"{what} has label {labels.max()} (CIFAR-10 has 0..9)",
                        "the archive is damaged: delete it")
    images = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)
    return images, labels

"""Arrays to uint8 ``(N, C, H, W)`` images, channel and size conversion, npz/npy sources.

Accepted arrays: rank 3 ``(N, H, W)`` or rank 4 ``(N, C, H, W)`` / ``(N, H, W, C)`` with
1 to 4 channels (channels-first wins when both axes could be channels). Values:

- uint8 as is; bool as 0/255; other integers if they lie in 0..255;
- floats in [0, 1] are scaled by 255 and rounded (the usual float-image convention);
- floats holding only whole numbers in 0..255 (a uint8 array cast to float) as is;
- anything else (negative, above 255, fractional values above 1, NaN/inf) is an error:
  guessing a range silently would train on the wrong data.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from aezoo.data.source import LoadContext, Splits
from aezoo.errors import DataError, UsageError
from aezoo.fileio import NotRegularFileError, open_regular

CHANNEL_COUNTS = (1, 2, 3, 4)
CHUNK = 1024  # images per step when converting, so temporaries stay small
LAYOUT_FIX = "save images as N,H,W or N,C,H,W or N,H,W,C with 1 to 4 channels"


def channel_axis(shape: tuple[int, ...], what: str) -> int | None:
    """1 for (N, C, H, W), 3 for (N, H, W, C), None for (N, H, W)."""
    if len(shape) == 3:
        return None
    if len(shape) != 4:
        raise DataError(f"{what} has shape {shape} (rank {len(shape)}), not an image stack",
                        LAYOUT_FIX)
    if shape[1] in CHANNEL_COUNTS:
        return 1
    if shape[3] in CHANNEL_COUNTS:
        return 3
    raise DataError(f"{what} has shape {shape}: neither axis 1 nor axis 3 is a channel axis "
                    "(1 to 4)", LAYOUT_FIX)


def to_images(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as uint8 ``(N, C, H, W)``; validates rank, layout, dtype and range."""
    axis = channel_axis(tuple(array.shape), what)
    if 0 in array.shape:
        raise DataError(f"{what} is empty (shape {tuple(array.shape)})",
                        "provide at least two images")
    scale = _value_scale(array, what)
    # A view: a uint8 memory map stays one (aezoo.data.mapped); others convert in chunks.
    view = (array[:, None] if axis is None else array if axis == 1
            else array.transpose(0, 3, 1, 2))
    if array.dtype == np.uint8:
        return view
    out = np.empty(view.shape, dtype=np.uint8)
    for start in range(0, len(out), CHUNK):
        chunk = np.asarray(view[start:start + CHUNK])
        if scale is not None:
            chunk = np.rint(chunk.astype(np.float32) * scale)
        out[start:start + CHUNK] = chunk  # numpy casts; values were range-checked
    return out


def _value_scale(array: np.ndarray, what: str) -> float | None:
    """None: copy the values; a number: multiply floats by it, then round."""
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return None
    if kind == "b":
        return 255.0
    if kind not in "iuf":
        raise DataError(f"{what} has dtype {array.dtype}, not numbers",
                        "save uint8 images (or floats in [0, 1])")
    lo, hi, finite, whole = _stats(array)
    if kind in "iu":
        if lo < 0 or hi > 255:
            raise DataError(f"{what} holds integers from {lo} to {hi}, outside 0..255",
                            "scale the images to 0..255 (uint8) or to floats in [0, 1]")
        return None
    if not finite:
        raise DataError(f"{what} holds NaN or infinite values", "clean the array")
    if lo >= 0 and hi <= 1:
        return 255.0
    if lo >= 0 and hi <= 255 and whole:
        return None  # a uint8 array stored as float
    raise DataError(f"{what} holds floats from {lo:g} to {hi:g}; floats must lie in [0, 1] "
                    "(or be whole numbers 0..255)", "divide by the maximum (x / 255 for "
                    "8-bit data) or save uint8")


def _stats(array: np.ndarray) -> tuple[float, float, bool, bool]:
    """min, max, all finite, all whole numbers: in chunks, so a memory map stays cheap."""
    lo, hi, finite, whole = np.inf, -np.inf, True, True
    is_float = array.dtype.kind == "f"
    for start in range(0, array.shape[0], CHUNK):
        chunk = np.asarray(array[start:start + CHUNK])
        if is_float and not np.isfinite(chunk).all():
            return 0.0, 0.0, False, False
        lo, hi = min(lo, chunk.min()), max(hi, chunk.max())
        if is_float and whole:
            whole = bool(np.array_equal(chunk, np.floor(chunk)))
    return float(lo), float(hi), finite, whole


def to_labels(labels: Any, n: int, what: str) -> np.ndarray | None:
    """Labels as int64 ``(N,)``, or None. Floats are accepted where each is a whole
    number; a fraction, NaN, null or string is refused naming the first, as is a list of
    ragged rows (an npz array and an hf: column alike)."""
    if labels is None:
        return None
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        raise DataError(f"{what} holds ragged lists, not integer class labels",
                        "give one integer label per image") from None
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{what} has shape {labels.shape}, expected ({n},) to match the images",
                        "give one integer label per image")
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.floor(labels)) & (np.abs(labels) < 2.0**62)
        if whole.all():
            return labels.astype(np.int64)
        index = int(np.argmin(whole))
    else:  # strings, nulls, objects
        index = next((i for i, v in enumerate(labels.tolist()) if not (
            isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**62)), -1)
        if index < 0:
            return labels.astype(np.int64)
    from aezoo.specs import short_repr

    value = labels[index]
    value = value.item() if isinstance(value, np.generic) else value
    raise DataError(f"{what} has dtype {labels.dtype}, not integer class labels (row "
                    f"{index}: {short_repr(value)})", "save labels as integers")


# PIL's own fixed-point ITU-R 601-2 luma, so arrays and folders convert identically.
_LUMA = (19595, 38470, 7471)


def convert_channels(images: np.ndarray, channels: int, what: str) -> np.ndarray:
    """1 <-> 3 channels: grey is repeated, colour becomes luma; alpha is dropped."""
    c = images.shape[1]
    if c == channels:
        return images
    if c in (2, 4):  # grey+alpha, RGBA: drop alpha (as PIL's convert does)
        images, c = images[:, :c - 1], c - 1
        if c == channels:
            return np.ascontiguousarray(images)
    if c == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    if c == 3 and channels == 1:
        out = np.empty((len(images), 1, *images.shape[2:]), dtype=np.uint8)
        for start in range(0, len(images), CHUNK):
            rgb = images[start:start + CHUNK].astype(np.uint32)
            luma = rgb[:, 0] * _LUMA[0] + rgb[:, 1] * _LUMA[1] + rgb[:, 2] * _LUMA[2]
            out[start:start + CHUNK, 0] = (luma + 0x8000) >> 16
        return out
    raise DataError(f"{what} has {c} channels; cannot convert them to {channels}",
                    "use --channels 1 or 3 with grey or RGB images")


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each image resized to ``size`` (H, W) with antialiased bilinear filtering."""
    h, w = size
    if images.shape[2:] == (h, w):
        return images
    from PIL import Image

    out = np.empty((len(images), images.shape[1], h, w), dtype=np.uint8)
    for i, image in enumerate(images):
        for ch, plane in enumerate(image):
            small = Image.fromarray(plane).resize((w, h), Image.Resampling.BILINEAR)
            out[i, ch] = np.asarray(small)
    return out


def _path(ctx: LoadContext, suffix: str) -> Path:
    path = Path(ctx.argument or "").expanduser()
    if not path.exists():
        raise UsageError(f"{path} does not exist", f"check the path after {ctx.source.name}:")
    if not path.is_file():
        raise UsageError(f"{path} is not a file",
                         "use folder:PATH for a directory of images" if path.is_dir()
                         else f"give a {suffix} file")
    return path


# An .npz member may hold at most this many times its compressed size (deflate cannot
# exceed ~1032:1; a larger claim is a bomb or a lie), and never more than it declares.
MAX_NPZ_RATIO = 1100


def _declared(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any], int, int]:
    """An .npy header's shape, dtype and data size (exact), and where the data starts."""
    if np.lib.format.read_magic(f) == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), dtype, int(np.prod(shape, dtype=object)) * dtype.itemsize, f.tell()


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


def check_npy_header(path: Path, expect: tuple[int, ...] | None = None) -> None:
    """Refuse an .npy that is not a regular file (a FIFO would block), or whose header
    declares more data than the file holds (before numpy maps or allocates it), or
    another shape than ``expect`` (a store's labels: one per image, whatever a sparse
    file of 8 TB holds)."""
    try:
        with open_regular(path) as f:
            shape, dtype, nbytes, offset = _declared(f)
    except NotRegularFileError as exc:  # a FIFO would block np.load: refused unopened
        raise DataError(f"{path} is not a readable .npy file ({exc.strerror})",
                        "replace it with a file written by numpy.save") from None
    except (OSError, ValueError, EOFError):
        return  # np.load says what is wrong
    if expect is not None and tuple(shape) != expect:
        raise DataError(f"{path} declares shape {tuple(shape)}, the store expects {expect}",
                        "the file is damaged or was replaced; pack the store again with "
                        "--force")
    holds = path.stat().st_size - offset
    if nbytes > holds:
        raise DataError(f"{path} declares shape {shape} {dtype} ({_bytes(nbytes)}), more than "
                        f"its {_bytes(holds)} of data", "the file is truncated or crafted; "
                        "save it again with numpy.save")


def read_npy(path: Path, fix: str, expect: tuple[int, ...] | None = None,
             mmap_mode: Literal["r"] | None = None) -> Any:
    """``np.load(path)`` once :func:`check_npy_header` passed; ``fix`` for an unreadable one."""
    check_npy_header(path, expect)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy file ({exc})", fix) from None


def check_npz_members(path: Path, archive: Any, keys: Iterable[str]) -> None:
    """Refuse an .npz member whose header declares more than the member holds, or that
    claims to decompress to more than MAX_NPZ_RATIO times its compressed size: before
    anything is decompressed beyond the header (numpy would allocate the declared shape)."""
    zf = archive.zip
    for key in keys:
        # numpy lists a member "x.npy" as "x": each key names a member, one way or the other
        zinfo = zf.getinfo(key if key in zf.namelist() else f"{key}.npy")
        what = f"{path}:{key}"
        limit = max(zinfo.compress_size, 1) * MAX_NPZ_RATIO
        if zinfo.compress_type != zipfile.ZIP_STORED and zinfo.file_size > limit:
            raise DataError(f"{what} claims {_bytes(zinfo.file_size)} from "
                            f"{_bytes(zinfo.compress_size)} compressed, beyond the limit of "
                            f"{MAX_NPZ_RATIO}x ({_bytes(limit)})",
                            "the archive is a compression bomb or damaged; do not use it")
        try:
            with zf.open(zinfo) as f:
                shape, dtype, nbytes, offset = _declared(f)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
            continue  # reading the array says what is wrong
        holds = zinfo.file_size - offset
        if nbytes > holds:
            raise DataError(f"{what} declares shape {shape} {dtype} ({_bytes(nbytes)}), "
                            f"more than the {_bytes(holds)} the member holds",
                            "the archive is truncated or crafted; save it again with "
                            "numpy.savez")


def load_npy(ctx: LoadContext) -> Splits:
    """``npy:PATH``: one array of images, memory-mapped while it is converted."""
    path = _path(ctx, ".npy")
    array = read_npy(path, "save it with numpy.save", mmap_mode="r")
    if not isinstance(array, np.ndarray):  # np.load opened an .npz archive
        array.close()
        raise UsageError(f"{path} is an .npz archive", f"use npz:{ctx.argument}")
    return Splits(train=to_images(array, str(path)))


# Key names, in order of preference, for each part of an .npz file.
NPZ_SPLIT_KEYS = {
    "train": ("train", "x_train"), "train_labels": ("train_labels", "y_train"),
    "val": ("val", "x_val"), "val_labels": ("val_labels", "y_val"),
    "test": ("test", "x_test"), "test_labels": ("test_labels", "y_test"),
}
NPZ_IMAGE_KEYS = ("images", "x", "data")
NPZ_LABEL_KEYS = ("labels", "y")


def load_npz(ctx: LoadContext) -> Splits:
    """``npz:PATH``: ``images`` (+ ``labels``), or ``train``/``val``/``test`` splits
    (+ ``*_labels``; Keras-style ``x_train``/``y_train`` too), or a single array."""
    path = _path(ctx, ".npz")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})",
                        "save it with numpy.savez") from None
    if isinstance(archive, np.ndarray):
        raise UsageError(f"{path} is a single .npy array", f"use npy:{ctx.argument}")
    with archive:
        keys = list(archive.files)
        parts = _npz_parts(keys)
        if parts is None:
            raise DataError(
                f"{path} has no image array under a known key (found: {', '.join(keys) or 'none'})",
                "store the images as 'images' (and 'labels'), or as 'train'/'val'/'test' "
                "(and 'train_labels', ...): numpy.savez(path, images=x, labels=y)")
        check_npz_members(path, archive, parts.values())
        try:
            arrays = {part: archive[key] for part, key in parts.items()}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{path}: cannot read an array ({exc})",
                            "save numeric arrays with numpy.savez (no object arrays)") from None
    out: dict[str, np.ndarray | None] = {}
    for part in ("train", "val", "test"):
        if part in arrays:
            out[part] = images = to_images(arrays[part], f"{path}:{parts[part]}")
            key = f"{part}_labels"
            out[key] = to_labels(arrays.get(key), len(images), f"{path}:{parts.get(key)}")
    return Splits(**out)  # type: ignore[arg-type]


def _npz_parts(keys: list[str]) -> dict[str, str] | None:
    """Which key holds which part, or None when no images can be found."""
    def first(candidates: tuple[str, ...]) -> str | None:
        return next((k for k in candidates if k in keys), None)

    if first(NPZ_SPLIT_KEYS["train"]):
        found = {part: first(cands) for part, cands in NPZ_SPLIT_KEYS.items()}
        return {part: key for part, key in found.items() if key is not None}
    images = first(NPZ_IMAGE_KEYS) or (keys[0] if len(keys) == 1 else None)
    if images is None:
        return None
    labels = first(NPZ_LABEL_KEYS)
    return {"train": images, **({"train_labels": labels} if labels else {})}

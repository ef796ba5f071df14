"""Reconstruction grids: originals on the top row, reconstructions below, as a PNG."""

from __future__ import annotations

import errno
import io
import struct
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aezoo.errors import UsageError, WriteError
from aezoo.fileio import atomic_write

if TYPE_CHECKING:
    import torch

    from aezoo.model import Autoencoder

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EIO}
PAD = 2  # pixels between and around the cells
PAD_VALUE = 255  # white separators
# Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): a bigger picture would not
# open in the tools that show it, and `sample --n 10000 --scale 8` once wrote 1.9 GB.
MAX_PICTURE_PIXELS = 89_478_485


def grid_size(rows: int, n: int, height: int, width: int, scale: int, pad: int = PAD
              ) -> tuple[int, int]:
    """(height, width) of the :func:`grid` of ``rows`` rows of ``n`` HxW images."""
    return rows * height * scale + (rows + 1) * pad, n * width * scale + (n + 1) * pad


def check_picture(height: int, width: int) -> None:
    """Refuse, before anything is allocated or computed, a picture over
    MAX_PICTURE_PIXELS."""
    if height * width > MAX_PICTURE_PIXELS:
        raise UsageError(f"the picture would be {width:,}x{height:,} pixels "
                         f"({width * height:,}), over the limit of {MAX_PICTURE_PIXELS:,}",
                         "use a smaller --scale, or fewer images (--n, --rows, --steps)")


def _to_numpy(images: np.ndarray | torch.Tensor) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        images = images.detach().to("cpu").contiguous().numpy()
    if images.dtype != np.uint8:
        images = np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255), 0, 255)
    return np.ascontiguousarray(images, dtype=np.uint8)


def grid(*rows: np.ndarray | torch.Tensor, scale: int = 2, pad: int = PAD) -> np.ndarray:
    """Rows of ``(N, C, H, W)`` images (uint8, or floats in [0, 1]) as one ``(H', W', C)``
    uint8 picture; each image is enlarged ``scale`` times (nearest neighbour).

    Size: ``N*W*scale + (N+1)*pad`` wide, ``len(rows)*H*scale + (len(rows)+1)*pad`` high.
    """
    if scale < 1:
        raise UsageError(f"scale must be at least 1 (got {scale})", "use --scale 1 or more")
    arrays = [_to_numpy(r) for r in rows]
    if not arrays or any(a.ndim != 4 or a.shape != arrays[0].shape for a in arrays):
        raise UsageError("grid rows must be (N, C, H, W) arrays of one shape",
                         "pass originals and reconstructions of the same images")
    n, c, h, w = arrays[0].shape
    if c not in (1, 3):
        raise UsageError(f"cannot draw {c}-channel images", "draw gray (1) or RGB (3) images")
    ch, cw = h * scale, w * scale
    check_picture(*grid_size(len(arrays), n, h, w, scale, pad))
    out = np.full((len(arrays) * ch + (len(arrays) + 1) * pad, n * cw + (n + 1) * pad, c),
                  PAD_VALUE, dtype=np.uint8)
    for r, row in enumerate(arrays):
        big = row.repeat(scale, axis=2).repeat(scale, axis=3).transpose(0, 2, 3, 1)
        y = pad + r * (ch + pad)
        for i in range(n):
            x = pad + i * (cw + pad)
            out[y:y + ch, x:x + cw] = big[i]
    return out


def default_scale(height: int, width: int) -> int:
    """How much a reconstruction picture enlarges its pixels unless told: small images
    (MNIST's 28x28, CIFAR's 32x32) four times, others twice."""
    return 4 if max(height, width) <= 32 else 2


def banded(*rows: np.ndarray | torch.Tensor, bands: int = 1, scale: int = 2,
           pad: int = PAD) -> np.ndarray:
    """Like :func:`grid`, with the N images split into ``bands`` bands stacked top to
    bottom (each band: its slice of every row), so many images make a picture, not a
    strip. The last band is padded with white cells; bands are 3*pad apart."""
    if bands < 1:
        raise UsageError(f"rows must be at least 1 (got {bands})", "use --rows 1 or more")
    arrays = [_to_numpy(r) for r in rows]
    n = len(arrays[0]) if arrays else 0
    bands = max(1, min(bands, n))
    if bands == 1:
        return grid(*arrays, scale=scale, pad=pad)
    per = -(-n // bands)
    _, _, h, w = arrays[0].shape
    height, width = grid_size(len(arrays), per, h, w, scale, pad)
    check_picture(bands * height + (bands - 1) * 2 * pad, width)
    parts = []
    for b in range(bands):
        chunk = [a[b * per:(b + 1) * per] for a in arrays]
        if len(chunk[0]) < per:  # white cells: padding, not images
            chunk = [np.concatenate([c, np.full((per - len(c), *c.shape[1:]), PAD_VALUE,
                                                dtype=np.uint8)]) for c in chunk]
        parts.append(grid(*chunk, scale=scale, pad=pad))
    gap = np.full((2 * pad, *parts[0].shape[1:]), PAD_VALUE, dtype=np.uint8)
    out = [parts[0]]
    for part in parts[1:]:
        out += [gap, part]
    return np.concatenate(out)


def captioned(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` ((H, W, C) uint8) with one line of ``text`` on a white strip above it
    (widened to fit the text)."""
    from PIL import Image, ImageDraw

    font = _font()
    h, w, c = image.shape
    text_w = int(font.getlength(text)) + 2 * PAD + 4
    strip = 18
    canvas = np.full((h + strip, max(w, text_w), c), PAD_VALUE, dtype=np.uint8)
    canvas[strip:, :w] = image
    mode = "L" if c == 1 else "RGB"
    picture = Image.fromarray(canvas[:, :, 0] if c == 1 else canvas, mode)
    ImageDraw.Draw(picture).text((PAD + 2, strip // 2 + 1), text, fill=0 if c == 1
                                 else (0, 0, 0), font=font, anchor="lm")
    out = np.asarray(picture, dtype=np.uint8)
    return out[:, :, None] if c == 1 else out


LABEL_INK = 70  # row labels and tile captions: dark grey on white


def _font(size: int = 12) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, ValueError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


@lru_cache(maxsize=64)
def _label_gutter(labels: tuple[str, ...], cell_h: int, pad: int) -> np.ndarray:
    """A white (H, W) column with ``labels`` right-aligned, one per row of cells."""
    from PIL import Image, ImageDraw

    font = _font()
    width = max(int(font.getlength(t)) for t in labels) + 8
    height = len(labels) * cell_h + (len(labels) + 1) * pad
    gutter = Image.new("L", (width, height), PAD_VALUE)
    draw = ImageDraw.Draw(gutter)
    for r, text in enumerate(labels):
        y = pad + r * (cell_h + pad) + cell_h / 2
        draw.text((width - 4, y), text, fill=LABEL_INK, font=font, anchor="rm")
    return np.asarray(gutter, dtype=np.uint8)


def labelled(picture: np.ndarray, labels: Sequence[str], cell_h: int, pad: int = PAD,
             bands: int = 1) -> np.ndarray:
    """``picture`` (a :func:`grid` or :func:`banded` of ``len(labels)`` rows of cells
    ``cell_h`` pixels high) with each row's label in a margin on its left. The margin is
    drawn once per size and cached: a picture written every epoch pays a copy."""
    gutter = _label_gutter(tuple(labels), cell_h, pad)
    column = [gutter]
    for _ in range(bands - 1):  # banded: 2*pad between bands
        column += [np.full((2 * pad, gutter.shape[1]), PAD_VALUE, np.uint8), gutter]
    margin = np.concatenate(column)[:picture.shape[0]]
    if margin.shape[0] < picture.shape[0]:  # pragma: no cover - a caption strip below
        margin = np.pad(margin, ((0, picture.shape[0] - margin.shape[0]), (0, 0)),
                        constant_values=PAD_VALUE)
    margin = np.repeat(margin[:, :, None], picture.shape[2], axis=2)
    return np.concatenate([margin, picture], axis=1)


def tile_captions(picture: np.ndarray, captions: Sequence[Sequence[str]], cell_w: int,
                  pad: int = PAD) -> np.ndarray:
    """``picture`` (a :func:`grid`) with lines of text under each column of cells, centred
    (e.g. an image's index and score); the picture widens where a caption needs it."""
    from PIL import Image, ImageDraw

    font = _font(11)
    lines = max((len(c) for c in captions), default=0)
    if not lines:
        return picture
    h, w, c = picture.shape
    strip = Image.new("L", (w, 13 * lines + 4), PAD_VALUE)
    draw = ImageDraw.Draw(strip)
    for i, caption in enumerate(captions):
        x = pad + i * (cell_w + pad) + cell_w / 2
        for k, text in enumerate(caption):
            draw.text((x, 2 + 13 * k), text, fill=LABEL_INK, font=font, anchor="ma")
    below = np.repeat(np.asarray(strip, dtype=np.uint8)[:, :, None], c, axis=2)
    return np.concatenate([picture, below])


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` uint8 -> PNG bytes (``level``: zlib's)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8 or not (image.ndim == 2 or image.shape[2] == 3):
        raise UsageError("a PNG needs an (H, W[, 1 or 3]) uint8 array", "convert the image")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG file, from its header."""
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


def write_png(path: str | Path, image: np.ndarray, level: int = 6) -> Path:
    """Atomically write ``image`` as a PNG file (``level``: zlib's compression level)."""
    return write_bytes(path, encode_png(image, level))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write a picture's bytes; a full disk or an unwritable path is one line."""
    path = Path(path)
    try:
        atomic_write(path, data)
    except OSError as exc:
        if exc.errno in _NO_SPACE:  # the machine's state, not the user's flag: exit code 1
            raise WriteError(f"cannot write {path} ({exc.strerror or exc})",
                             "free some space, or write to another disk") from None
        raise UsageError(f"cannot write {path} ({exc.strerror or exc})",
                         "choose a writable --out") from None
    return path


def reconstruct(model: Autoencoder, images: torch.Tensor,
                memory_format: torch.memory_format | None = None) -> torch.Tensor:
    """``model``'s reconstructions of uint8 ``images`` (on its device), as uint8."""
    from aezoo.tensors import evaluating, to_uint8, to_unit  # torch: not for writing a picture

    with evaluating(model):
        x = to_unit(images, memory_format)
        out = model(x)
    return to_uint8(out)

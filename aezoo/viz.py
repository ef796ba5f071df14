"""Reconstruction grids: originals on the top row, reconstructions below, as a PNG.

The PNG encoder is a few lines of zlib (8-bit gray or RGB), so pictures need no Pillow.
"""

from __future__ import annotations

import errno
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aezoo._io import atomic_write
from aezoo.errors import UsageError, WriteError
from aezoo.tensors import to_uint8, to_unit

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
    from PIL import Image, ImageDraw, ImageFont

    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(size=12)
    except (OSError, ValueError):  # pragma: no cover - Pillow without FreeType
        font = ImageFont.load_default()
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


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` uint8 -> PNG bytes (``level``: zlib's)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise UsageError("a PNG needs an (H, W[, 1 or 3]) uint8 array", "convert the image")
    h, w, c = image.shape
    raw = np.zeros((h, 1 + w * c), dtype=np.uint8)  # filter byte 0 (none) on each row
    raw[:, 1:] = image.reshape(h, w * c)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


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
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = to_unit(images, memory_format)
        out = model(x)
    model.train(was_training)
    return to_uint8(out)

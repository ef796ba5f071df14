"""One encoded image (bytes or a file) -> uint8 ``(C, H, W)``, by the folder source's rules.

Shared by the streamed readers (tar shards, Hugging Face datasets) so a PNG decodes to
the same pixels whichever source it came from: EXIF orientation applied, 16-bit grey
scaled, alpha dropped, antialiased bilinear resize. ``where`` names the image in errors
(a path, or ``shard.tar member 0001.png``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from aezoo.errors import DataError, summary
from aezoo.fileio import check_regular

if TYPE_CHECKING:
    from PIL import Image

ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
FIX = "remove or replace it, or pass --skip-bad-images to skip and count it"
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm", "pgm", "tif", "tiff")


@dataclass(frozen=True)
class Header:
    size: tuple[int, int]  # (H, W) after EXIF rotation
    grey: bool


def unreadable(where: str, exc: BaseException, fix: str = FIX) -> DataError:
    return DataError(f"cannot read image {where} ({summary(exc, with_type=False)})", fix)


def _open(data: bytes | IO[bytes] | Path, where: str, fix: str = FIX) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(data, Path):
            check_regular(data)  # a FIFO would block Pillow's open
        return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {where} (not an image Pillow can read)",
                        fix) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise unreadable(where, exc, fix) from None  # a bomb: a tiny file claiming 400 MP


def header(data: bytes | IO[bytes], where: str) -> Header:
    """Size and greyness, from the image's header only."""
    with _open(data, where) as image:
        w, h = image.size
        try:
            orientation = image.getexif().get(0x0112)
        except Exception:  # a broken EXIF block is not worth failing the image for
            orientation = None
        if orientation in ROTATED:
            w, h = h, w
        return Header((h, w), image.mode in GREY_MODES or grey_palette(image))


def decode(data: bytes | IO[bytes] | Path, where: str, size: tuple[int, int] | None,
           channels: int | None, fix: str = FIX) -> np.ndarray:
    """uint8 ``(channels, H, W)``; ``size`` (H, W) resizes, None keeps the image's size;
    ``channels`` None: grey (1) or RGB (3) as the file is."""
    from PIL import Image, ImageOps

    try:
        with _open(data, where, fix) as image:
            if channels is None:
                channels = 1 if image.mode in GREY_MODES or grey_palette(image) else 3
            image = ImageOps.exif_transpose(image)
            image = to_mode(image, channels)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise unreadable(where, exc, fix) from None
    out = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.array(out, order="C")  # owned and writable: torch.from_numpy shares it


def check_size(array: np.ndarray, want: tuple[int, int], where: str) -> None:
    """A streamed image of another size than the first one (without --image-size)."""
    if array.shape[1:] != want:
        got = array.shape[1:]
        raise DataError(f"image {where} is {got[1]}x{got[0]}, the others {want[1]}x{want[0]}",
                        "pass --image-size N or HxW to resize them all")


def grey_palette(image: Image.Image) -> bool:
    if image.mode != "P":
        return False
    palette = image.getpalette() or []
    rgb = np.array(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16-bit/float grey
        values = np.asarray(image, dtype=np.float64)
        top = 255.0 if image.mode == "F" and values.max() <= 255 else 65535.0
        grey = Image.fromarray(np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8))
        return grey if channels == 1 else grey.convert("RGB")
    return image.convert("L" if channels == 1 else "RGB")

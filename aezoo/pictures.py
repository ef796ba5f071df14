"""Pictures from Python: ``reconstruct``, ``sample`` and ``interpolate`` return a
:class:`Picture` (shown in Jupyter, an array to numpy and matplotlib, ``save`` to PNG),
with the arguments (and defaults) of the commands of those names. See docs/api.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.errors import UsageError
from aezoo.using import loaded_split, model_on

if TYPE_CHECKING:
    import numpy as np


class Picture:
    """Originals over reconstructions as an RGB or grey uint8 picture ``(H, W[, C])``.

    Shown as an image in Jupyter; ``numpy.asarray(picture)`` (or ``.array``) is the
    array, ``matplotlib.pyplot.imshow(picture)`` draws it, ``save(path)`` writes a PNG.
    """

    def __init__(self, array: np.ndarray, description: str, path: Path | None = None
                 ) -> None:
        self._png = array  # (H, W, C) as aezoo.viz writes it
        self.array = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
        self.description = description
        self.path = path

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        import numpy as np

        return np.asarray(self.array, dtype=dtype)

    def _repr_png_(self) -> bytes:
        from aezoo.viz import encode_png

        return encode_png(self._png)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the picture as a PNG file."""
        from aezoo.outputs import check_picture_path
        from aezoo.viz import write_png

        check_picture_path(Path(path))
        return write_png(Path(path), self._png)

    def __repr__(self) -> str:
        h, w = self.array.shape[:2]
        where = f", {self.path}" if self.path else ""
        return f"Picture({w}x{h} px: {self.description}{where})"


def reconstruct(model: Any, n: int = 10, rows: int = 1, data: Any = None,
                split: str | None = None, out: str | os.PathLike[str] | None = None,
                scale: int | None = None, caption: bool = False, device: str = "auto",
                force: bool = False, corrupt: str | None = None, seed: int = 0,
                labels: bool = True) -> Picture:
    """``aezoo reconstruct``: the first ``n`` images of a split (top row) over their
    reconstructions (bottom row), as a :class:`Picture`; written to ``out`` (a PNG) when
    given (the CLI's default is recon.png; here nothing is written without ``out``).
    ``labels`` names each row in a margin on the left (``--no-labels``: the bare grid).

    ``rows`` stacks that many bands; ``scale`` enlarges each pixel (default 4 up to 32x32,
    else 2); ``caption`` adds a line naming the run, its epoch and the PSNR; ``corrupt``
    draws three rows (corrupted inputs, reconstructions, clean images). ``model`` and
    ``data`` as for :func:`evaluate`.
    """
    from aezoo.encoding import corrupted_reconstructions
    from aezoo.loaded import corruption
    from aezoo.outputs import new_picture
    from aezoo.viz import banded, captioned, default_scale, labelled
    from aezoo.viz import reconstruct as recon_of

    target = new_picture(out, force)
    loaded = loaded_split(model, data, split, n, device)
    scale = scale or default_scale(*loaded.images.shape[-2:])
    if corrupt:
        noisy, recon = corrupted_reconstructions(
            loaded.model, loaded.images, corruption(corrupt, loaded.path),
            loaded.memory_format, seed)
        picture = banded(noisy, recon, loaded.images, bands=rows, scale=scale)
        names: tuple[str, ...] = (f"corrupted ({corrupt})", "reconstruction", "original")
        what = f"{corrupt}-corrupted images over their reconstructions over the clean ones"
    else:
        recon = recon_of(loaded.model, loaded.images, loaded.memory_format)
        picture = banded(loaded.images, recon, bands=rows, scale=scale)
        names = ("original", "reconstruction")
        what = "images over their reconstructions"
    if labels:
        picture = labelled(picture, names, loaded.images.shape[-2] * scale,
                           bands=max(1, min(rows, len(loaded.images))))
    if caption:
        picture = captioned(picture, _caption(loaded, recon))
    return _written(picture, f"{len(loaded.images)} {loaded.data_name}/{loaded.split} {what}",
                    target)


def _written(picture: np.ndarray, description: str, target: Path | None) -> Picture:
    """The Picture, written to ``target`` first when there is one."""
    from aezoo.viz import write_png

    if target is not None:
        write_png(target, picture)
    return Picture(picture, description, target)


def _caption(loaded: Any, recon: Any) -> str:
    """``RUN  epoch E  PSNR P dB (N DATA/SPLIT images)``; the epoch where the run says."""
    from aezoo.metrics import psnr
    from aezoo.records import epoch_of
    from aezoo.tensors import to_unit

    path = loaded.path
    epoch = epoch_of(path) if path.exists() else None
    value = psnr(to_unit(recon).float(), to_unit(loaded.images).float()).mean().item()
    where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return "  ".join([where, *([f"epoch {epoch}"] if epoch is not None else []),
                      f"PSNR {value:.2f} dB", f"({len(loaded.images)} {loaded.data_name}/"
                      f"{loaded.split} images)"])


def sample(model: Any, n: int = 64, seed: int = 0,
           out: str | os.PathLike[str] | None = None, scale: int = 2, device: str = "auto",
           force: bool = False) -> Picture:
    """``aezoo sample``: ``n`` draws from the prior N(0, I) of a variational model (e.g.
    cae-vae) decoded into a grid of ceil(sqrt(n)) columns, as a :class:`Picture`;
    written to ``out`` when given (the command's default: samples.png)."""
    import math

    import torch

    from aezoo.generation import sample as draw
    from aezoo.outputs import new_picture
    from aezoo.viz import check_picture, grid, grid_size

    target = new_picture(out, force)
    loaded, _, _ = model_on(model, device)
    cols = math.ceil(math.sqrt(n)) if n >= 1 else 1
    if n >= 1:  # a picture past Pillow's limit is refused before any draw is decoded
        _, h, w = loaded.spec.input_shape
        check_picture(*grid_size(math.ceil(n / cols), cols, h, w, scale))
    images = draw(loaded, n, seed)
    blank = torch.full((math.ceil(n / cols) * cols - n, *images.shape[1:]), 255,
                       dtype=torch.uint8, device=images.device)  # cells that end the last row
    rows = torch.cat([images, blank]).split(cols)
    return _written(grid(*rows, scale=scale), f"{n} draws from the prior, seed {seed}",
                    target)


def interpolate(model: Any, from_: int = 0, to: int = 1, steps: int = 10,
                data: Any = None, split: str | None = None,
                out: str | os.PathLike[str] | None = None, scale: int = 2,
                device: str = "auto", force: bool = False) -> Picture:
    """``aezoo interpolate``: the straight line between the codes of images ``from_`` and
    ``to`` of a split (indices; ``--from`` and ``--to``), decoded into a strip of
    ``steps`` images, both ends included, as a :class:`Picture`; written to ``out`` when
    given (the command's default: interpolation.png). ``model`` and ``data`` as for
    :func:`evaluate`."""
    from aezoo.generation import interpolate as line
    from aezoo.outputs import new_picture
    from aezoo.viz import grid

    target = new_picture(out, force)
    loaded = loaded_split(model, data, split, None, device)
    count = len(loaded.images)
    for flag, index in (("--from", from_), ("--to", to)):
        if not 0 <= index < count:
            raise UsageError(f"{flag} {index} is not an image of {loaded.data_name}/"
                             f"{loaded.split}", f"use 0 to {count - 1}")
    strip = line(loaded.model, loaded.images[from_], loaded.images[to], steps)
    return _written(grid(strip, scale=scale), f"{steps} steps from image {from_} to image "
                    f"{to} of {loaded.data_name}/{loaded.split}", target)


"""The files the commands that use a model write, checked before anything loads: a
picture (PNG only), latents (``.npy`` with labels beside, or ``.npz``), and no existing
file replaced without ``force``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from aezoo.errors import OutputExistsError, UsageError
from aezoo.fileio import atomic_write, atomic_write_many


def refuse_overwrite(path: Path, force: bool) -> None:
    """An existing output is kept unless ``force``."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists", "choose another --out, or pass --force")


LATENT_SUFFIXES = (".npy", ".npz")


def latents_format(out: Path) -> str:
    """``npy`` or ``npz``, from ``out``'s extension; any other is refused (before anything
    loads), so a file's bytes always match its name."""
    suffix = out.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise UsageError(f"cannot write latents to {out} (unknown extension "
                         f"'{suffix or out.name}')",
                         "use --out NAME.npy (latents, labels beside it) or NAME.npz (both "
                         "in one file)")
    return suffix[1:]


def check_picture_path(out: Path) -> None:
    """``reconstruct`` writes PNG: any other extension is refused, never written as PNG."""
    if out.suffix.lower() != ".png":
        raise UsageError(f"cannot write a reconstruction grid to {out} (PNG only, not "
                         f"'{out.suffix or out.name}')", "use --out NAME.png")


def new_picture(out: str | os.PathLike[str] | None, force: bool) -> Path | None:
    """``out`` as a PNG to write (None: no picture), refused now when it is not ``.png``
    or exists without ``force``."""
    if out is None:
        return None
    path = Path(out)
    check_picture_path(path)
    refuse_overwrite(path, force)
    return path


def labels_path(out: Path) -> Path | None:
    """Where the labels of the latents in ``out`` go: ``NAME.labels.npy`` beside a .npy
    file; None for a .npz file (they go inside it, as ``labels``)."""
    if latents_format(out) == "npz":
        return None
    return out.with_name(out.name.removesuffix(out.suffix) + ".labels.npy")


def write_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as a .npy file (no pickles), written atomically."""
    atomic_write(path, _npy(array))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_latents(out: Path, latents: np.ndarray, labels: Any = None,
                  class_names: list[str] | None = None) -> Path | None:
    """``latents`` to ``out`` and, when given, ``labels`` (int64, row i labelling latent i).

    ``.npy``: the labels go to ``labels_path(out)``, which is returned (None without
    labels). ``.npz``: one file with arrays ``latents`` and (when given) ``labels`` and
    ``class_names`` (strings: label k names class_names[k]); returns None."""
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    where = labels_path(out)
    if where is None:  # .npz
        buf = io.BytesIO()
        arrays = {"latents": latents, **({"labels": labels} if labels is not None else {})}
        if labels is not None and class_names:
            arrays["class_names"] = np.array(class_names, dtype=str)
        # Plain numeric and string arrays: nothing to pickle. (No allow_pickle=: numpy
        # before 2.2 would store it as one more array.)
        np.savez(buf, **arrays)
        atomic_write(out, buf.getvalue())
        return None
    if labels is None:
        write_npy(out, latents)
        where.unlink(missing_ok=True)  # an earlier encode's labels would label these latents
        return None
    atomic_write_many([(out, _npy(latents)), (where, _npy(labels))])  # one set: both new
    return where

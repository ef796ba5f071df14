"""Images given to the Python API in memory, and the dataset names it is given.

``fit`` and the functions that use a model take images as numpy arrays, torch tensors, a
torch ``Dataset`` or ``DataLoader``; here they become uint8 NCHW arrays (and labels), and
``fit`` saves them into the run directory as ``data-HASH.npz``. Torch and numpy are
imported when a function is called.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

# In-memory training images are saved into the run directory (so that resume, eval and
# reconstruct find them) as uint8; beyond this size fit refuses them and says how to pass
# a file instead.
MAX_ARRAY_BYTES = 2 * 1024**3


def data_name(data: Any) -> str:
    """A dataset name or a path as the name ``--data`` takes."""
    from aezoo.config import absolute_data_name

    if isinstance(data, os.PathLike):
        path = Path(data).resolve()
        if path.is_dir():
            return f"folder:{path}"
        if path.suffix in (".npz", ".npy"):
            return f"{path.suffix[1:]}:{path}"
        raise UsageError(f"fit cannot tell what {path} holds",
                         "pass a folder, a .npz or .npy file, or a name like 'folder:PATH'")
    if isinstance(data, str):
        return absolute_data_name(data, Path.cwd())
    raise UsageError(f"fit cannot train on a {type(data).__name__}",
                     "pass images (numpy array or torch tensor), a pair (train, val), a "
                     "torch Dataset or DataLoader, or a dataset name")


def arrays_of(data: Any, val: Any) -> dict[str, np.ndarray] | None:
    """In-memory images (and labels) as uint8 NCHW arrays by npz key, or None when
    ``data`` is a name or path."""
    if isinstance(data, str | os.PathLike):
        if val is not None:
            raise UsageError("val= needs images in memory as data",
                             "pass the validation images with the dataset (npz keys "
                             "train/val), or both as arrays")
        return None
    if data is None or isinstance(data, int | float):
        data_name(data)  # says what fit takes
    if isinstance(data, tuple | list) and len(data) == 2 and val is None and \
            not isinstance(data[0], int | float):
        data, val = data
    out: dict[str, np.ndarray] = {}
    for key, given, what in (("train", data, "data"), ("val", val, "val")):
        if given is not None:
            out[key], labels = images_of(given, what)
            if labels is not None:
                out[f"{key}_labels"] = labels
    size = sum(a.nbytes for a in out.values())
    if size > MAX_ARRAY_BYTES:
        raise UsageError(f"images in memory of {size:,} bytes exceed fit's limit of "
                         f"{MAX_ARRAY_BYTES:,} (they are copied into the run directory)",
                         "save them with numpy.save and pass 'npy:PATH' (memory-mapped), or "
                         "a folder as 'folder:PATH'")
    return out


def images_of(data: Any, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 NCHW images (and int64 labels, where a Dataset yields them)."""
    import numpy as np
    import torch

    from aezoo.data.arrays import to_images, to_labels

    if isinstance(data, torch.utils.data.DataLoader | torch.utils.data.Dataset):
        return _from_torch(data, what)
    if isinstance(data, torch.Tensor):
        tensor = data.detach().cpu()
        data = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    array = np.asarray(data)
    images = np.ascontiguousarray(to_images(array, what))
    return images, to_labels(None, len(images), what)


def _from_torch(data: Any, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A Dataset's or DataLoader's images (the first element of a tuple), read once."""
    import numpy as np
    import torch

    from aezoo.data.arrays import to_images, to_labels

    loader = data if isinstance(data, torch.utils.data.DataLoader) else \
        torch.utils.data.DataLoader(data, batch_size=256)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    size = 0
    for batch in loader:
        label = None
        if isinstance(batch, tuple | list):
            batch, label = batch[0], (batch[1] if len(batch) > 1 else None)
        if not isinstance(batch, torch.Tensor):
            raise UsageError(f"{what} yields {type(batch).__name__}, not image tensors",
                             "give a Dataset of image tensors (or (image, label) pairs); "
                             "transforms.ToTensor() makes PIL images tensors")
        part = to_images(batch.detach().cpu().float().numpy(), what)
        images.append(np.ascontiguousarray(part))
        if isinstance(label, torch.Tensor) and label.dim() == 1 and \
                not label.is_floating_point():
            labels.append(label.numpy())
        size += part.nbytes
        if size > MAX_ARRAY_BYTES:
            raise UsageError(f"{what} holds more than {MAX_ARRAY_BYTES:,} bytes of images "
                             "(fit copies them into the run directory)",
                             "write the images to a folder and pass 'folder:PATH'")
    if not images:
        raise UsageError(f"{what} is empty", "give at least two images")
    stacked = np.concatenate(images)
    all_labels = np.concatenate(labels) if len(labels) == len(images) else None
    return stacked, to_labels(all_labels, len(stacked), what)


def save_arrays(run_dir: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """The images as ``data-HASH.npz`` in ``run_dir`` (named by content: a run replaced
    with ``force`` never loses the data its run.json names)."""
    import io

    import numpy as np

    from aezoo.fileio import atomic_write
    from aezoo.rundir import DATA_PREFIX

    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(str(arrays[key].shape).encode())
        digest.update(np.ascontiguousarray(arrays[key]).data)  # a view, not a copy
    path = run_dir / f"{DATA_PREFIX}{digest.hexdigest()[:16]}.npz"
    if not path.exists():
        buffer = io.BytesIO()
        np.savez(buffer, **dict(arrays))  # type: ignore[arg-type]
        atomic_write(path, buffer.getvalue())
    return path


"""Using a trained model from Python: ``evaluate``, ``encode``, ``score`` and ``export``,
with the arguments (and defaults) of the commands of those names. See docs/api.md.

Each takes a model as a run (a :class:`aezoo.fitting.Run` or its directory), a model
file, ``VARIANT.TAG``, ``hf://ORG/REPO`` or a built model, and data as a dataset name or
images in memory. Torch is imported when a function is called.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from aezoo.errors import ShapeError, UsageError
from aezoo.fitting import as_target
from aezoo.inmemory import data_name, images_of

if TYPE_CHECKING:
    import numpy as np

    from aezoo.exporting import Exported
    from aezoo.scoring import Scores


def loaded_split(model: Any, data: Any, split: str | None, limit: int | None, device: str) -> Any:
    """``aezoo.loaded.Loaded`` for what the Python functions accept: a model (a path,
    a run directory, a Run, ``VARIANT.TAG``, ``hf://...``, or a built Autoencoder) and data
    (a dataset name, default the run's own, or images in memory)."""
    from aezoo.loaded import check_request, load_split, model_split

    model = as_target(model)
    check_request(None, limit)  # a split is checked where it is looked up
    in_memory = data is not None and not isinstance(data, str | os.PathLike)
    if not in_memory and not hasattr(model, "state_dict"):
        name = None if data is None else data_name(data)
        return load_split(model, name, split, limit, device)
    model, path, dev = model_on(model, device)
    if not in_memory:
        from aezoo.specs import DataSpec

        spec = DataSpec() if data is None else DataSpec(name=data_name(data))
        return model_split(model, path, spec, split, limit, dev)
    return _array_split(model, path, data, split, limit, dev)


def _array_split(model: Any, path: Path, data: Any, split: str | None, limit: int | None,
                 dev: Any) -> Any:
    import torch

    from aezoo.loaded import Loaded
    from aezoo.protocols import format_shape
    from aezoo.tensors import preferred_memory_format

    if split is not None:
        raise UsageError("split= picks a split of a named dataset",
                         "leave split out when passing images")
    images, labels = images_of(data, "data")
    if limit is not None:
        images, labels = images[:limit], None if labels is None else labels[:limit]
    if tuple(images.shape[1:]) != tuple(model.input_shape):
        raise ShapeError(f"{path} expects {format_shape(model.input_shape)} images, "
                         f"the images given are {format_shape(images.shape[1:])}",
                         "pass images of the model's input_shape")
    memory_format = preferred_memory_format(dev)
    model.to(memory_format=memory_format)
    return Loaded(model, path, "images", "given", torch.from_numpy(images).to(dev), labels,
                  memory_format)


def evaluation(model: Any, data: Any = None, split: str | None = None,
               limit: int | None = None, batch_size: int = 1024, device: str = "auto",
               corrupt: str | None = None, seed: int = 0, metrics: list[str] | None = None
               ) -> tuple[Any, Any, dict[str, Any]]:
    """``evaluate``'s work: (the Loaded model and split, the Evaluation, the report), for
    the CLI."""
    from aezoo.evaluation import evaluate as measure
    from aezoo.loaded import corruption

    loaded = loaded_split(model, data, split, limit, device)
    spec = corruption(corrupt, loaded.path) if corrupt else None
    result = measure(loaded.model, loaded.images, batch_size, loaded.memory_format, spec, seed,
                     metrics)
    report = {"model": str(loaded.path), "data": loaded.data_name, "split": loaded.split,
              "device": str(loaded.images.device), **result.as_dict()}
    return loaded, result, report


def evaluate(model: Any, data: Any = None, split: str | None = None,
             limit: int | None = None, batch_size: int = 1024, device: str = "auto",
             corrupt: str | None = None, seed: int = 0,
             metrics: list[str] | None = None) -> dict[str, Any]:
    """``aezoo eval``: MSE, BCE, PSNR (dB), SSIM, loss, images/s and parameter count of a
    model over a split, as the dict ``aezoo eval --json`` prints (``metrics``: the plugin
    metrics to add, as ``--metric``; None: every installed one, [] none).

    ``model``: a run (``Run`` or its directory), a model file, ``VARIANT.TAG``,
    ``hf://ORG/REPO`` or a built model. ``data``: a dataset name (default: the run's own,
    else mnist5k) or images in memory. ``split``: test, val or train (default test where
    the dataset has one, else val). ``corrupt``: a transform name (denoising).
    """
    return evaluation(model, data, split, limit, batch_size, device, corrupt, seed,
                      metrics)[2]


class Encoded(NamedTuple):
    """What :func:`encode` returns: float32 latents, their labels (int64, or None), the
    class names (label k names class_names[k], where known), and where they came from."""

    latents: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    data: str
    split: str
    files: tuple[Path, ...]


def encode(model: Any, data: Any = None, split: str | None = None,
           out: str | os.PathLike[str] | None = None, flatten: bool = False,
           limit: int | None = None, batch_size: int = 1024, device: str = "auto",
           force: bool = False, output: str = "mean", seed: int = 0,
           plot: str | os.PathLike[str] | None = None, projection: str = "pca") -> Encoded:
    """``aezoo encode``: the latents of a split (``(N, C, H, W)``, or ``(N, C*H*W)`` with
    ``flatten``) and their labels, as an :class:`Encoded` (``latents, labels, *_ =
    aezoo.encode(run)``). With ``out`` (``NAME.npy``, labels in ``NAME.labels.npy``, or
    ``NAME.npz``) they are written too (the CLI's default is latents.npy). ``output``:
    ``mean`` (the code), or a VAE's ``logvar`` or a ``sample``. ``model`` and ``data`` as
    for :func:`evaluate`.

    ``plot=PATH.png`` also draws the latent space: the codes projected to 2-D
    (``projection``: pca, always available; umap with umap-learn; tsne with scikit-learn),
    a dot per image coloured by its label, a legend of the class names.
    """
    from aezoo.encoding import encode_split
    from aezoo.outputs import labels_path, new_picture, refuse_overwrite, write_latents

    target = Path(out) if out is not None else None
    if plot is not None:
        from aezoo.latents import PROJECTIONS

        if projection not in PROJECTIONS:
            raise UsageError(f"unknown projection '{projection}'", "use pca, umap or tsne")
    drawing = new_picture(plot, force)
    if target is not None:  # labels_path refuses an extension other than .npy and .npz
        for path in (target, labels_path(target)):
            if path is not None:
                refuse_overwrite(path, force)
    loaded = loaded_split(model, data, split, limit, device)
    latents = encode_split(loaded.model, loaded.images, batch_size, loaded.memory_format,
                           flatten, output, seed)
    if drawing is not None:
        from aezoo import latents as space
        from aezoo.curves import write_picture

        points = space.project(latents, projection, seed)
        where = loaded.path.parent.name if loaded.path.name.endswith(".safetensors") \
            else loaded.path.name
        title = (f"{where}: {len(latents):,} {loaded.data_name}/{loaded.split} codes, "
                 f"{points.method}")
        write_picture(drawing, space.picture(points, loaded.labels, loaded.class_names, title,
                                             seed=seed))
    labels_out = None
    if target is not None:
        labels_out = write_latents(target, latents, loaded.labels, loaded.class_names)
    files = tuple(p for p in (target, labels_out, drawing) if p is not None)
    return Encoded(latents, loaded.labels, loaded.class_names, loaded.data_name,
                   loaded.split, files)


def score(model: Any, data: str | None = None, split: str | None = None,
          metric: str | None = None, out: str | os.PathLike[str] | None = None,
          threshold_percentile: float | None = None, outlier_label: Iterable[int] = (),
          top: int = 0, picture: str | os.PathLike[str] | None = None,
          limit: int | None = None, batch_size: int = 1024, device: str = "auto",
          force: bool = False) -> Scores:
    """``aezoo score``: every image of a split scored by its reconstruction error (higher:
    more unusual), as :class:`aezoo.scoring.Scores` (``.scores``, ``.labels``,
    ``.threshold``, ``.flagged`` — indices above the threshold, highest score first —,
    ``.auc``, ``.summary()``).

    ``threshold_percentile=P`` flags images above the P-th percentile of the validation
    split's scores; ``outlier_label=[k, ...]`` reports the ROC AUC for those labels;
    ``top=K`` with ``picture=`` draws the K worst (image / reconstruction / error map,
    each tile's index and score). ``out`` (``.csv``, ``.json`` or ``.npy``) writes the
    scores; unlike the command (``scores.csv``), nothing is written without it.
    ``model``: a run (``Run`` or its directory), a model file, ``VARIANT.TAG`` or
    ``hf://``.
    """
    from aezoo.outputs import new_picture, refuse_overwrite
    from aezoo.scoring import check_scores_path, score_split, worst_picture, write_scores
    from aezoo.viz import write_png

    target = Path(out) if out is not None else None
    if target is not None:
        check_scores_path(target)
        refuse_overwrite(target, force)
    if picture is not None and not top:
        raise UsageError("--picture needs --top K", "pass --top 10 --picture worst.png")
    drawing = new_picture(picture, force)
    result = score_split(as_target(model), data, split, metric, limit, batch_size, device,
                         threshold_percentile, tuple(outlier_label))
    if target is not None:
        write_scores(target, result)
    if drawing is not None:
        image, _ = worst_picture(result, top)
        write_png(drawing, image)
        result.picture = drawing
    return result


def export(model: Any, format: str | None = None,  # noqa: A002 - the flag's name
           part: str | None = None, out: str | os.PathLike[str] | None = None,
           data: str | None = None, opset: int | None = None, force: bool = False
           ) -> Exported:
    """``aezoo export``: the encoder, the decoder and the whole model (or one ``part``) as
    ONNX or TorchScript files with a JSON sidecar, each verified against PyTorch before
    anything is written; returns :class:`aezoo.exporting.Exported` (``.files`` by part,
    ``.sidecar``, ``.info``). ``format``: onnx or torchscript (default: from ``out``'s
    extension, else onnx); ``out`` default ``model.onnx``. ONNX needs ``aezoo[onnx]``."""
    from aezoo.exporting import export_run

    return export_run(as_target(model), format, part,
                      Path(out) if out is not None else None, data, opset, force)


def model_on(model: Any, device: str) -> tuple[Any, Path, Any]:
    """(the model on ``device``, what to call it, the device): a built model moved there,
    or one loaded from a reference."""
    from aezoo.device import resolve_device

    model, dev = as_target(model), resolve_device(device)
    if hasattr(model, "state_dict"):
        return model.to(dev), Path(f"<{type(model).__name__} {model.spec.variant or 'model'}>"), dev
    from aezoo.checkpoint import load
    from aezoo.pretrained import locate

    path = locate(model).path
    return load(path, device=dev), path, dev

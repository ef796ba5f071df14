"""The Python front door: ``aezoo.fit`` and the functions named after the CLI commands.

``fit`` trains from a variant name, a spec, a built model or a weight set, on a dataset
name or on in-memory images (numpy arrays, torch tensors, a torch ``Dataset`` or
``DataLoader``), and returns a :class:`Run`: the trained model, its history per epoch and
its files. ``evaluate``, ``reconstruct`` and ``encode`` take the arguments (and defaults)
of ``aezoo eval``, ``aezoo reconstruct`` and ``aezoo encode``. See docs/api.md.

Importing this module is cheap (it is imported by ``import aezoo``): torch, numpy and the
trainer are imported when a function is called.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from aezoo.exporting import Exported
    from aezoo.leaderboard import BenchResult
    from aezoo.model import Autoencoder
    from aezoo.records import Comparison, RunInfo
    from aezoo.scoring import Scores
    from aezoo.specs import ModelSpec, RunSpec

__all__ = ["MAX_ARRAY_BYTES", "Encoded", "Picture", "Run", "bench", "compare", "encode",
           "evaluate", "export", "fit", "interpolate", "reconstruct", "runs", "sample", "score"]

# In-memory training images are saved into the run directory (so that resume, eval and
# reconstruct find them) as uint8; beyond this size fit refuses them and says how to pass
# a file instead.
MAX_ARRAY_BYTES = 2 * 1024**3

# fit's keyword arguments that are not train keys: the data keys, and the CLI's --loss.
_DATA_KEYS = ("limit", "val_fraction", "split_seed", "image_size", "channels", "skip_bad")


@dataclass
class Run:
    """A training run seen from Python: its model, its history and its directory.

    ``history`` holds one dict per epoch, every numeric value of ``metrics.jsonl``
    (``epoch``, ``train_loss``, ``val_loss``, ``seconds``, ``images_per_s``, ``lr``, named
    loss terms, logged metrics): ``pandas.DataFrame(run.history)`` or ``run.to_pandas()``.
    ``interrupted`` is True when Ctrl-C stopped it; ``run.resume()`` continues it.
    """

    out_dir: Path
    spec: RunSpec
    model: Autoencoder | None
    history: list[dict[str, Any]]
    stop_reason: str | None = None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def model_path(self) -> Path:
        """``model.safetensors`` (written when training finished)."""
        from aezoo.rundir import MODEL_FILE

        return self.out_dir / MODEL_FILE

    @property
    def best_path(self) -> Path:
        """``best.safetensors``: the weights of the epoch with the lowest val_loss."""
        from aezoo.rundir import BEST_FILE

        return self.out_dir / BEST_FILE

    @property
    def metrics_path(self) -> Path:
        from aezoo.rundir import METRICS_JSONL

        return self.out_dir / METRICS_JSONL

    @property
    def images_dir(self) -> Path:
        """``images/``: a reconstruction grid per epoch and ``curves.png``."""
        from aezoo.rundir import IMAGES_DIR

        return self.out_dir / IMAGES_DIR

    def to_pandas(self) -> Any:
        """The history as a pandas DataFrame indexed by epoch (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            from aezoo.errors import UsageError

            raise UsageError("to_pandas needs pandas, which is not installed",
                             "pip install pandas, or use run.history (a list of dicts)"
                             ) from None
        return pd.DataFrame(self.history).set_index("epoch")

    def resume(self, *, verbose: int = 1, callbacks: Iterable[Any] = (),
               **overrides: Any) -> Run:
        """Continue this run from its last checkpoint (``aezoo train --resume DIR``);
        ``epochs=N`` trains a finished run further. Returns the continued run."""
        return fit(resume=self.out_dir, verbose=verbose, callbacks=callbacks, **overrides)

    def __repr__(self) -> str:
        last = self.history[-1] if self.history else {}
        loss = last.get("val_loss")
        state = " (interrupted)" if self.interrupted else (
            f" ({self.stop_reason})" if self.stop_reason else "")
        val = f", val_loss {loss:.5f}" if isinstance(loss, float) else ""
        return (f"Run('{self.out_dir}', {len(self.history)} epoch"
                f"{'s' * (len(self.history) != 1)}{val}){state}")


def fit(model: str | os.PathLike[str] | RunSpec | ModelSpec | Mapping[str, Any] | Autoencoder
        | None = None, data: Any = "mnist5k", val: Any = None, *,
        out: str | os.PathLike[str] | None = None, force: bool = False,
        resume: str | os.PathLike[str] | Run | None = None, verbose: int = 1,
        callbacks: Iterable[Any] = (), set: Mapping[str, Any] | None = None,  # noqa: A002
        **overrides: Any) -> Run:
    """Train a model, write a run directory, and return the :class:`Run`.

    ``model``: a variant name (``"cae-upsample"``), a weight set ``VARIANT.TAG``, a run
    directory or model file to start from (fine-tuning: ``train.init``), a built
    ``Autoencoder`` (its spec and weights), a ``RunSpec`` / run-spec dict, or a ``ModelSpec``.

    ``data``: a dataset name as ``--data`` takes it (``"mnist5k"``, ``"npz:x.npz"``,
    ``"folder:imgs"``), a path to a ``.npz``/``.npy`` file or a folder of images, images in
    memory (a numpy array or torch tensor, uint8 or floats in [0, 1], ``(N, C, H, W)``,
    ``(N, H, W, C)`` or ``(N, H, W)``), a pair ``(train, val)``, or a torch ``Dataset`` /
    ``DataLoader`` of such images (or of ``(image, label)`` pairs). ``val``: validation
    images (default: 10% of ``data`` held out). Images in memory are saved into the run
    directory as ``data-HASH.npz`` (at most ``MAX_ARRAY_BYTES`` as uint8), which
    ``run.json`` names, so resume, ``evaluate`` and ``reconstruct`` find them.

    Keyword overrides: any train key (``epochs=``, ``lr=``, ``batch_size=``, ``seed=``,
    ``device=``, ``patience=``, ...), the data keys ``limit``, ``val_fraction``,
    ``image_size``, ``channels``, ``split_seed``; ``loss="mse"``, ``input_shape=(C, H, W)``;
    ``set={"model.encoder.params.channels": [32, 16, 8]}`` sets any dotted spec key.

    ``out``: the run directory (default ``runs/VARIANT-TIME``); ``force`` replaces a
    finished run there. ``resume``: a run directory (or Run) to continue instead; then
    only train keys that may change on resume are accepted. ``verbose=0`` prints nothing;
    ``1`` a progress bar on a terminal and a line per epoch (also in Jupyter).

    Ctrl-C (in Jupyter: interrupt the kernel) stops after the current step and saves a
    checkpoint; the partial run is returned with ``interrupted=True`` (``run.resume()``
    continues it). A run stopped before its first checkpoint raises TrainingInterrupted.
    """
    from aezoo.training.precision import flush_denormals

    flush_denormals()
    extra = [*_progress(verbose), *callbacks]
    if resume is not None:
        if model is not None or val is not None or set or not _is_default(data):
            from aezoo.errors import UsageError

            raise UsageError("fit(resume=...) continues a run with its own model and data",
                             "pass only train keys that may change (epochs=, lr=, device=, "
                             "...) with resume=")
        run_dir = resume.out_dir if isinstance(resume, Run) else Path(resume)
        return _train(lambda: _resume(run_dir, overrides, extra), run_dir, verbose)
    if model is None:
        from aezoo.errors import UsageError

        raise UsageError("fit needs a model", "fit('cae-upsample', images), or "
                         "fit(resume='runs/NAME') to continue a run")
    return _fit_new(model, data, val, out, force, extra, set or {}, overrides, verbose)


def _is_default(data: Any) -> bool:
    return isinstance(data, str) and data == "mnist5k"


def _resume(run_dir: Path, overrides: Mapping[str, Any], extra: list[Any]) -> Any:
    from aezoo.run import resume

    return resume(run_dir, overrides, callbacks=extra)


def _fit_new(model: Any, data: Any, val: Any, out: str | os.PathLike[str] | None,
             force: bool, extra: list[Any], sets: Mapping[str, Any],
             overrides: Mapping[str, Any], verbose: int) -> Run:
    from aezoo import config
    from aezoo.rundir import claim_new_dir, default_out_dir

    variant, layers, built = _model_layers(model)
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        flat[_override_key(key)] = value
    flat.update(sets)
    arrays = _arrays(data, val)
    if arrays is None:
        flat["data.name"] = _data_name(data)
    layers.append(config.layer(flat))
    spec = config.build_run_spec(variant, layers)
    # The directory is known before training: in-memory data and weights go in first.
    if out is None:
        run_dir, created = claim_new_dir(default_out_dir(spec))
    else:
        run_dir = Path(out)
        created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        if arrays is not None or built is not None:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                from aezoo.errors import UsageError

                raise UsageError(f"cannot create output directory {run_dir} "
                                 f"({exc.strerror})", "choose a writable out=") from None
    written: list[Path] = []
    try:
        if arrays is not None:
            path = _save_arrays(run_dir, arrays)
            written.append(path)
            spec = spec.model_copy(update={"data": spec.data.model_copy(
                update={"name": f"npz:{path.resolve()}"})})
        if built is not None:
            init = _save_init(run_dir, built)
            written.append(init)
            spec = spec.model_copy(update={"train": spec.train.model_copy(
                update={"init": str(init.resolve())})})
        from aezoo.run import train

        follow = not ("input_shape" in overrides or "model.input_shape" in sets)
        return _train(lambda: train(spec, run_dir, force=force, callbacks=extra,
                                    follow_data=follow), run_dir, verbose)
    except BaseException:
        from aezoo.rundir import RUN_FILE

        if not (run_dir / RUN_FILE).exists():
            for path in written:  # a run that never started leaves no trace
                path.unlink(missing_ok=True)
            for directory in created:
                with contextlib.suppress(OSError):
                    directory.rmdir()
        raise


def _train(start: Any, run_dir: Path, verbose: int) -> Run:
    """Run ``start`` (aezoo.run.train or resume) and make a Run of what it returns; a
    Ctrl-C after the first checkpoint returns the partial run."""
    from aezoo.training import TrainingInterrupted

    began = time.perf_counter()
    try:
        result = start()
    except TrainingInterrupted as exc:
        where = _interrupted_dir(exc, run_dir)
        if where is None:
            raise
        run = open_run(where, interrupted=True)
        if verbose:
            print(f"interrupted: {exc.problem}; run.resume() continues it")
        return run
    history = _history(result.out_dir)
    run = Run(result.out_dir, result.spec, result.model, history, result.stop_reason,
              warnings=list(result.warnings))
    if verbose and result.rank == 0:
        last = history[-1] if history else {}
        loss = last.get("val_loss")
        took = time.perf_counter() - began
        print(f"saved {run.model_path} ({len(history)} epochs in {took:.1f} s"
              + (f", val_loss {loss:.5f})" if isinstance(loss, float) else ")"))
    return run


def _interrupted_dir(exc: Exception, run_dir: Path) -> Path | None:
    """The run directory if an interrupt left a checkpoint there, else None."""
    from aezoo.rundir import STATE_FILE

    return run_dir if (run_dir / STATE_FILE).exists() else None


def open_run(run_dir: str | os.PathLike[str], *, interrupted: bool = False) -> Run:
    """A Run for an existing run directory: its spec, history and model (the final one,
    else the last checkpoint; None before the first epoch ended)."""
    from aezoo.checkpoint import load
    from aezoo.errors import CheckpointError
    from aezoo.rundir import model_path, read_run_spec

    path = Path(run_dir)
    spec = read_run_spec(path)
    model = None
    with contextlib.suppress(CheckpointError):
        model = load(model_path(path))
    return Run(path, spec, model, _history(path), interrupted=interrupted)


def _history(run_dir: Path) -> list[dict[str, Any]]:
    from aezoo.epochs import read_rows
    from aezoo.rundir import METRICS_JSONL

    return read_rows(run_dir / METRICS_JSONL)


def _progress(verbose: int) -> list[Any]:
    """A progress bar on a terminal, a line per epoch elsewhere (Jupyter, logs)."""
    if not verbose:
        return []
    from rich.console import Console

    from aezoo.cli.progress import ProgressCallback

    return [ProgressCallback(Console(highlight=False))]


def _override_key(key: str) -> str:
    """A keyword of fit as a dotted run-spec key."""
    from aezoo.errors import UsageError
    from aezoo.specs import TrainSpec

    if key in TrainSpec.model_fields:
        return f"train.{key}"
    if key in _DATA_KEYS:
        return f"data.{key}"
    if key == "loss":
        return "model.loss.name"
    if key == "input_shape":
        return "model.input_shape"
    import difflib

    known = [*TrainSpec.model_fields, *_DATA_KEYS, "loss", "input_shape"]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}=? " if close else ""
    raise UsageError(f"fit got an unknown keyword '{key}'",
                     f"{hint}use a train key (epochs=, lr=, batch_size=, ...), a data key "
                     "(limit=, val_fraction=, ...), loss=, input_shape=, or set={KEY: VALUE}")


def _model_layers(model: Any) -> tuple[str | None, list[dict[str, Any]], Any]:
    """(the variant name, the layers it contributes, a built model whose weights to start
    from) for each kind of ``model`` fit accepts."""
    from aezoo.errors import UsageError
    from aezoo.specs import ModelSpec, RunSpec

    if isinstance(model, RunSpec):
        return None, [model.model_dump(mode="json")], None
    if isinstance(model, ModelSpec):
        return None, [{"model": model.model_dump(mode="json")}], None
    if isinstance(model, Mapping):
        if not {"model", "train", "data"} & set(model):
            raise UsageError("fit takes a run-spec dict ({'model': ..., 'train': ...})",
                             "nest the model keys under 'model', or pass a ModelSpec")
        return None, [dict(model)], None
    if hasattr(model, "spec") and hasattr(model, "state_dict"):  # a built Autoencoder
        return None, [{"model": model.spec.model_dump(mode="json")}], model
    if isinstance(model, Run):
        model = model.out_dir
    if isinstance(model, str | os.PathLike):
        text = os.fspath(model)
        from aezoo import registry

        if isinstance(model, str) and text in registry.names("variant") and \
                not Path(text).exists():
            return text, [], None
        from aezoo.checkpoint import read_spec
        from aezoo.pretrained import is_reference, locate

        if not (is_reference(text) or Path(text).exists()):
            return text, [], None  # build_run_spec names the unknown variant
        located = locate(text)
        spec = read_spec(located.path)
        init = text if is_reference(text) else str(Path(text).resolve())
        return spec.variant, [{"model": spec.model_dump(mode="json"),
                               "train": {"init": init}}], None
    raise UsageError(f"fit cannot train a {type(model).__name__}",
                     "pass a variant name, a weight set VARIANT.TAG, a run directory, a "
                     "built model, or a RunSpec")


def _data_name(data: Any) -> str:
    """A dataset name or a path as the name ``--data`` takes."""
    from aezoo.config import absolute_data_name
    from aezoo.errors import UsageError

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


def _arrays(data: Any, val: Any) -> dict[str, np.ndarray] | None:
    """In-memory images (and labels) as uint8 NCHW arrays by npz key, or None when
    ``data`` is a name or path."""
    if isinstance(data, str | os.PathLike):
        if val is not None:
            from aezoo.errors import UsageError

            raise UsageError("val= needs images in memory as data",
                             "pass the validation images with the dataset (npz keys "
                             "train/val), or both as arrays")
        return None
    if data is None or _is_number_like(data):
        _data_name(data)  # says what fit takes
    if isinstance(data, tuple | list) and len(data) == 2 and val is None and \
            not _is_number_like(data[0]):
        data, val = data
    out: dict[str, np.ndarray] = {}
    out["train"], labels = _images(data, "data")
    if labels is not None:
        out["train_labels"] = labels
    if val is not None:
        out["val"], val_labels = _images(val, "val")
        if val_labels is not None:
            out["val_labels"] = val_labels
    size = sum(a.nbytes for a in out.values())
    if size > MAX_ARRAY_BYTES:
        from aezoo.errors import UsageError

        raise UsageError(f"images in memory of {size:,} bytes exceed fit's limit of "
                         f"{MAX_ARRAY_BYTES:,} (they are copied into the run directory)",
                         "save them with numpy.save and pass 'npy:PATH' (memory-mapped), or "
                         "a folder as 'folder:PATH'")
    return out


def _is_number_like(value: Any) -> bool:
    return isinstance(value, int | float)


def _images(data: Any, what: str) -> tuple[np.ndarray, np.ndarray | None]:
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
    from aezoo.errors import UsageError

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


def _save_arrays(run_dir: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """The images as ``data-HASH.npz`` in ``run_dir`` (named by content: a run replaced
    with ``force`` never loses the data its run.json names)."""
    import io

    import numpy as np

    from aezoo._io import atomic_write
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


def _save_init(run_dir: Path, model: Any) -> Path:
    """A built model's weights as ``init.safetensors``: the run starts from them."""
    from aezoo.checkpoint import save
    from aezoo.rundir import INIT_FILE

    return save(model, run_dir / INIT_FILE)


# --- using a trained model: the functions of aezoo eval / reconstruct / encode -----------


def _loaded(model: Any, data: Any, split: str | None, limit: int | None, device: str) -> Any:
    """``aezoo.evaluation.Loaded`` for what the Python functions accept: a model (a path,
    a run directory, a Run, ``VARIANT.TAG``, ``hf://...``, or a built Autoencoder) and data
    (a dataset name, default the run's own, or images in memory)."""
    from aezoo.device import resolve_device
    from aezoo.errors import UsageError
    from aezoo.evaluation import load_split, model_split

    if isinstance(model, Run):
        model = model.out_dir
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be positive (got {limit})", "pass --limit 1 or more")
    in_memory = data is not None and not isinstance(data, str | os.PathLike)
    if not in_memory and not hasattr(model, "state_dict"):
        name = None if data is None else _data_name(data)
        return load_split(model, name, split, limit, device)
    dev = resolve_device(device)
    if hasattr(model, "state_dict"):
        path = Path(f"<{type(model).__name__} {model.spec.variant or 'model'}>")
        model.to(dev)
    else:
        from aezoo.checkpoint import load
        from aezoo.pretrained import locate

        path = locate(model).path
        model = load(path, device=dev)
    if not in_memory:
        from aezoo.specs import DataSpec

        spec = DataSpec() if data is None else DataSpec(name=_data_name(data))
        return model_split(model, path, spec, split, limit, dev)
    return _array_split(model, path, data, split, limit, dev)


def _array_split(model: Any, path: Path, data: Any, split: str | None, limit: int | None,
                 dev: Any) -> Any:
    import torch

    from aezoo.errors import ShapeError, UsageError
    from aezoo.evaluation import Loaded
    from aezoo.protocols import format_shape
    from aezoo.tensors import preferred_memory_format

    if split is not None:
        raise UsageError("split= picks a split of a named dataset",
                         "leave split out when passing images")
    images, labels = _images(data, "data")
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


@dataclass
class Evaluated:
    """What ``evaluate`` measured, with the model and images it used (for the CLI)."""

    loaded: Any
    result: Any
    report: dict[str, Any]


def evaluation(model: Any, data: Any = None, split: str | None = None,
               limit: int | None = None, batch_size: int = 1024, device: str = "auto",
               corrupt: str | None = None, seed: int = 0,
               metrics: list[str] | None = None) -> Evaluated:
    """``evaluate``'s work, returning the loaded model and metrics objects too."""
    from aezoo.evaluation import corruption
    from aezoo.evaluation import evaluate as measure

    loaded = _loaded(model, data, split, limit, device)
    spec = corruption(corrupt, loaded.path) if corrupt else None
    result = measure(loaded.model, loaded.images, batch_size, loaded.memory_format, spec, seed,
                     metrics)
    report = {"model": str(loaded.path), "data": loaded.data_name, "split": loaded.split,
              "device": str(loaded.images.device), **result.as_dict()}
    return Evaluated(loaded, result, report)


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
                      metrics).report


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
        from aezoo.evaluation import check_picture_path
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
    from aezoo.evaluation import (
        check_picture_path,
        corrupted_reconstructions,
        corruption,
        refuse_overwrite,
    )
    from aezoo.viz import banded, captioned, default_scale, labelled, write_png
    from aezoo.viz import reconstruct as recon_of

    target = Path(out) if out is not None else None
    if target is not None:
        check_picture_path(target)
        refuse_overwrite(target, force)
    loaded = _loaded(model, data, split, n, device)
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
    description = f"{len(loaded.images)} {loaded.data_name}/{loaded.split} {what}"
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
    from aezoo.evaluation import (
        check_picture_path,
        encode_split,
        labels_path,
        refuse_overwrite,
        write_latents,
    )

    target = Path(out) if out is not None else None
    drawing = Path(plot) if plot is not None else None
    if drawing is not None:
        from aezoo.latents import PROJECTIONS

        if projection not in PROJECTIONS:
            from aezoo.errors import UsageError

            raise UsageError(f"unknown projection '{projection}'", "use pca, umap or tsne")
        check_picture_path(drawing)
        refuse_overwrite(drawing, force)
    labels_file = None
    if target is not None:
        labels_file = labels_path(target)  # refuses an extension other than .npy and .npz
        refuse_overwrite(target, force)
        if labels_file is not None:
            refuse_overwrite(labels_file, force)
    loaded = _loaded(model, data, split, limit, device)
    latents = encode_split(loaded.model, loaded.images, batch_size, loaded.memory_format,
                           flatten, output, seed)
    files: tuple[Path, ...] = ()
    if drawing is not None:
        from aezoo import latents as space

        points = space.project(latents, projection, seed)
        where = loaded.path.parent.name if loaded.path.name.endswith(".safetensors") \
            else loaded.path.name
        title = (f"{where}: {len(latents):,} {loaded.data_name}/{loaded.split} codes, "
                 f"{points.method}")
        space.write(drawing, space.picture(points, loaded.labels, loaded.class_names, title,
                                           seed=seed))
    if target is not None:
        labels_out = write_latents(target, latents, loaded.labels, loaded.class_names)
        files = (target,) if labels_out is None else (target, labels_out)
    if drawing is not None:
        files = (*files, drawing)
    return Encoded(latents, loaded.labels, loaded.class_names, loaded.data_name,
                   loaded.split, files)


# --- the other commands: score, export, sample, interpolate, runs, compare, bench ---------


def _target(model: Any) -> Any:
    """A Run as its directory; everything else as given."""
    return model.out_dir if isinstance(model, Run) else model


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
    from aezoo.errors import UsageError
    from aezoo.evaluation import check_picture_path, refuse_overwrite
    from aezoo.scoring import check_scores_path, score_split, worst_picture, write_scores
    from aezoo.viz import write_png

    target = Path(out) if out is not None else None
    drawing = Path(picture) if picture is not None else None
    if target is not None:
        check_scores_path(target)
        refuse_overwrite(target, force)
    if drawing is not None:
        if not top:
            raise UsageError("--picture needs --top K", "pass --top 10 --picture worst.png")
        check_picture_path(drawing)
        refuse_overwrite(drawing, force)
    result = score_split(_target(model), data, split, metric, limit, batch_size, device,
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

    return export_run(_target(model), format, part,
                      Path(out) if out is not None else None, data, opset, force)


def _model_on(model: Any, device: str) -> Any:
    """A built model moved to ``device``, or one loaded from a reference."""
    if hasattr(model, "state_dict"):
        from aezoo.device import resolve_device

        return model.to(resolve_device(device))
    from aezoo.checkpoint import load
    from aezoo.pretrained import locate

    return load(locate(_target(model)).path, device=device)


def sample(model: Any, n: int = 64, seed: int = 0,
           out: str | os.PathLike[str] | None = None, scale: int = 2, device: str = "auto",
           force: bool = False) -> Picture:
    """``aezoo sample``: ``n`` draws from the prior N(0, I) of a variational model (e.g.
    cae-vae) decoded into a grid of ceil(sqrt(n)) columns, as a :class:`Picture`;
    written to ``out`` when given (the command's default: samples.png)."""
    import math

    import torch

    from aezoo.evaluation import check_picture_path, refuse_overwrite
    from aezoo.generation import sample as draw
    from aezoo.viz import check_picture, grid, grid_size, write_png

    target = Path(out) if out is not None else None
    if target is not None:
        check_picture_path(target)
        refuse_overwrite(target, force)
    loaded = _model_on(model, device)
    cols = math.ceil(math.sqrt(n)) if n >= 1 else 1
    if n >= 1:  # a picture past Pillow's limit is refused before any draw is decoded
        _, h, w = loaded.spec.input_shape
        check_picture(*grid_size(math.ceil(n / cols), cols, h, w, scale))
    images = draw(loaded, n, seed)
    rows = [images[i:i + cols] for i in range(0, n, cols)]
    if len(rows[-1]) < cols:  # pad the last row with blank cells
        pad = torch.full((cols - len(rows[-1]), *images.shape[1:]), 255, dtype=torch.uint8,
                         device=images.device)
        rows[-1] = torch.cat([rows[-1], pad])
    picture = grid(*rows, scale=scale)
    if target is not None:
        write_png(target, picture)
    return Picture(picture, f"{n} draws from the prior, seed {seed}", target)


def interpolate(model: Any, from_: int = 0, to: int = 1, steps: int = 10,
                data: Any = None, split: str | None = None,
                out: str | os.PathLike[str] | None = None, scale: int = 2,
                device: str = "auto", force: bool = False) -> Picture:
    """``aezoo interpolate``: the straight line between the codes of images ``from_`` and
    ``to`` of a split (indices; ``--from`` and ``--to``), decoded into a strip of
    ``steps`` images, both ends included, as a :class:`Picture`; written to ``out`` when
    given (the command's default: interpolation.png). ``model`` and ``data`` as for
    :func:`evaluate`."""
    from aezoo.errors import UsageError
    from aezoo.evaluation import check_picture_path, refuse_overwrite
    from aezoo.generation import interpolate as line
    from aezoo.viz import grid, write_png

    target = Path(out) if out is not None else None
    if target is not None:
        check_picture_path(target)
        refuse_overwrite(target, force)
    loaded = _loaded(model, data, split, None, device)
    count = len(loaded.images)
    for flag, index in (("--from", from_), ("--to", to)):
        if not 0 <= index < count:
            raise UsageError(f"{flag} {index} is not an image of {loaded.data_name}/"
                             f"{loaded.split}", f"use 0 to {count - 1}")
    strip = line(loaded.model, loaded.images[from_], loaded.images[to], steps)
    picture = grid(strip, scale=scale)
    if target is not None:
        write_png(target, picture)
    return Picture(picture, f"{steps} steps from image {from_} to image {to} of "
                   f"{loaded.data_name}/{loaded.split}", target)


def runs(directory: str | os.PathLike[str] = "runs",
         filter: str | None = None,  # noqa: A002 - the flag's name
         sort: str = "name") -> list[RunInfo]:
    """``aezoo runs``: the training runs under ``directory`` as
    :class:`aezoo.records.RunInfo` records (``name``, ``variant``, ``data``, ``epochs_done``,
    ``epochs``, ``status``, ``val_loss``, ``best_epoch``, ``seconds``, ``params``;
    ``.as_dict()`` is a row of ``aezoo runs --json``). ``filter``: an fnmatch pattern on
    the name or variant (a plain word matches anywhere); ``sort``: name, variant, data,
    epochs, status, val_loss, best_epoch, time, params or modified (newest first)."""
    from aezoo.records import list_runs

    return list_runs(directory, filter, sort)


def compare(*runs: str | os.PathLike[str] | Run, out: str | os.PathLike[str] | None = None,
            force: bool = False) -> Comparison:
    """``aezoo compare``: two or more runs side by side, as :class:`aezoo.records.Comparison`
    (``.runs``, ``.diff`` — the spec keys that differ, a value per run —, ``.notes``);
    ``out=NAME.png`` draws their val_loss curves overlaid (the command's default is
    compare.png; here nothing is written without ``out``)."""
    from aezoo.records import compare_runs

    return compare_runs([_target(r) for r in runs], Path(out) if out is not None else None,
                        force)


def bench(patterns: str | Iterable[str] | None = None, data: str = "mnist5k",
          epochs: int = 5, seeds: int = 1, limit: int | None = None,
          batch_size: int | None = None, device: str = "auto",
          out: str | os.PathLike[str] = "bench", force: bool = False, verbose: int = 1
          ) -> BenchResult:
    """``aezoo bench``: train every variant matching ``patterns`` (fnmatch; default all)
    on the same data, budget and seeds 0..K-1, evaluate each on the same split, rank them
    by PSNR; writes ``out/VARIANT/seed-K`` runs, ``out/bench.json`` and ``out/bench.png``.
    Returns :class:`aezoo.leaderboard.BenchResult` (``.summary``: one dict per variant, best
    first). Running it again reuses finished runs and resumes an interrupted one.
    ``verbose=0`` prints nothing; ``1`` a line per run."""
    from aezoo.leaderboard import run_bench
    from aezoo.training.precision import flush_denormals

    flush_denormals()
    chosen = patterns if patterns is None or isinstance(patterns, str) else list(patterns)
    return run_bench(chosen, data, epochs, seeds, out=Path(out), limit=limit, device=device,
                     batch_size=batch_size, force=force,
                     say=print if verbose else (lambda _: None))

"""Training from Python: ``aezoo.fit`` and the :class:`Run` it returns.

``fit`` trains from a variant name, a spec, a built model or a weight set, on a dataset
name or on images in memory (``aezoo.inmemory``), and returns the trained model, its
history per epoch and its files. See docs/api.md.

Importing this module is cheap (``import aezoo`` does): torch, numpy and the trainer are
imported when a function is called.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.errors import CheckpointError, UsageError
from aezoo.inmemory import arrays_of, data_name, save_arrays

if TYPE_CHECKING:
    from aezoo.model import Autoencoder
    from aezoo.specs import ModelSpec, RunSpec

# fit's keyword arguments that are not train keys: the data keys, and the CLI's --loss.
_DATA_KEYS = ("limit", "val_fraction", "split_seed", "image_size", "channels", "skip_bad")


class _RunFile:
    """A Run's path to a file of its directory, by the name of its constant in
    ``aezoo.rundir`` (the one module that spells them; imported when first read)."""

    def __init__(self, constant: str, doc: str) -> None:
        self.constant, self.__doc__ = constant, doc

    def __get__(self, run: Run | None, owner: type | None = None) -> Path:
        from aezoo import rundir

        name = Path(getattr(rundir, self.constant))
        return name if run is None else run.out_dir / name

    def __set__(self, run: Run, value: Any) -> None:  # read-only, as a property
        raise AttributeError("a Run's file paths follow its out_dir")


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

    model_path = _RunFile("MODEL_FILE", "``model.safetensors`` (written when training finished).")
    best_path = _RunFile("BEST_FILE", "``best.safetensors``: the weights of the best epoch "
                         "(by ``train.monitor``: the lowest val_loss by default).")
    metrics_path = _RunFile("METRICS_JSONL", "``metrics.jsonl``: a row per epoch.")
    images_dir = _RunFile("IMAGES_DIR", "``images/``: a reconstruction grid per epoch and "
                          "``curves.png``.")

    def to_pandas(self) -> Any:
        """The history as a pandas DataFrame indexed by epoch (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
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
        if model is not None or val is not None or set or not (
                isinstance(data, str) and data == "mnist5k"):
            raise UsageError("fit(resume=...) continues a run with its own model and data",
                             "pass only train keys that may change (epochs=, lr=, device=, "
                             "...) with resume=")
        from aezoo.run import resume as resume_run

        run_dir = resume.out_dir if isinstance(resume, Run) else Path(resume)
        return _train(lambda: resume_run(run_dir, overrides, callbacks=extra), run_dir,
                      verbose)
    if model is None:
        raise UsageError("fit needs a model", "fit('cae-upsample', images), or "
                         "fit(resume='runs/NAME') to continue a run")
    return _fit_new(model, data, val, out, force, extra, set or {}, overrides, verbose)


def _fit_new(model: Any, data: Any, val: Any, out: str | os.PathLike[str] | None,
             force: bool, extra: list[Any], sets: Mapping[str, Any],
             overrides: Mapping[str, Any], verbose: int) -> Run:
    from aezoo import config
    from aezoo.rundir import claim_new_dir, default_out_dir

    variant, layers, built = _model_layers(model)
    flat = {_override_key(key): value for key, value in overrides.items()} | dict(sets)
    arrays = arrays_of(data, val)
    if arrays is None:
        flat["data.name"] = data_name(data)
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
                raise UsageError(f"cannot create output directory {run_dir} "
                                 f"({exc.strerror})", "choose a writable out=") from None
    written: list[Path] = []
    try:
        if arrays is not None:
            path = save_arrays(run_dir, arrays)
            written.append(path)
            spec = spec.model_copy(update={"data": spec.data.model_copy(
                update={"name": f"npz:{path.resolve()}"})})
        if built is not None:  # its weights are the run's start
            from aezoo.checkpoint import save
            from aezoo.rundir import INIT_FILE

            init = save(built, run_dir / INIT_FILE)
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
        from aezoo.rundir import STATE_FILE

        if not (run_dir / STATE_FILE).exists():  # stopped before its first checkpoint
            raise
        run = open_run(run_dir, interrupted=True)
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


def open_run(run_dir: str | os.PathLike[str], *, interrupted: bool = False) -> Run:
    """A Run for an existing run directory: its spec, history and model (the final one,
    else the last checkpoint; None before the first epoch ended)."""
    from aezoo.checkpoint import load
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
    from aezoo.specs import TrainSpec

    model_keys = {"loss": "model.loss.name", "input_shape": "model.input_shape"}
    if key in TrainSpec.model_fields:
        return f"train.{key}"
    if key in _DATA_KEYS:
        return f"data.{key}"
    if key in model_keys:
        return model_keys[key]
    import difflib

    known = [*TrainSpec.model_fields, *_DATA_KEYS, *model_keys]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}=? " if close else ""
    raise UsageError(f"fit got an unknown keyword '{key}'",
                     f"{hint}use a train key (epochs=, lr=, batch_size=, ...), a data key "
                     "(limit=, val_fraction=, ...), loss=, input_shape=, or set={KEY: VALUE}")


def _model_layers(model: Any) -> tuple[str | None, list[dict[str, Any]], Any]:
    """(the variant name, the layers it contributes, a built model whose weights to start
    from) for each kind of ``model`` fit accepts."""
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
    model = as_target(model)
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


def as_target(model: Any) -> Any:
    """A Run as its directory; everything else as given."""
    return model.out_dir if isinstance(model, Run) else model

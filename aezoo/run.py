"""A training run end to end: output dir, data, model, trainer, files. No printing.

A run directory holds ``run.json`` (the resolved RunSpec), ``metrics.jsonl`` and
``metrics.csv``, ``last.safetensors``, ``best.safetensors`` (lowest val_loss),
``state.safetensors`` (everything ``--resume`` needs), ``images/epoch-NNNN.png`` and,
once training has finished, ``model.safetensors`` (the final weights, equal to last).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from aezoo import distributed
from aezoo.callbacks import (
    BEST_FILE,
    LAST_FILE,
    STATE_FILE,
    Checkpointer,
    EarlyStopping,
    EpochResult,
    ImageWriter,
    MetricsWriter,
    load_callback,
)
from aezoo.checkpoint import atomic_write, save
from aezoo.config import resolve_model
from aezoo.data import ArrayDataset, load_dataset
from aezoo.errors import OutputExistsError, ShapeError, SpecError, UsageError
from aezoo.model import Autoencoder, from_spec
from aezoo.specs import RunSpec, TrainSpec, validate

MODEL_FILE = "model.safetensors"
RUN_FILE = "run.json"
# Settings that may change on --resume: they leave the data order and model untouched.
RESUMABLE = ("epochs", "device", "lr", "grad_clip", "patience", "min_delta", "precision",
             "compile", "channels_last", "checkpoint_every", "check_every", "images",
             "callbacks")


def default_out_dir(spec: RunSpec) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.model.variant or spec.model.encoder.name}-{stamp}"


def prepare_out_dir(out: Path, force: bool) -> list[Path]:
    """Refuse to clobber a saved model, and fail now (not after training) if unwritable.

    Returns the directories it created, deepest first.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a directory", "choose another --out")
    if (out / MODEL_FILE).exists() and not force:
        raise OutputExistsError(f"{out / MODEL_FILE} already exists",
                                "choose another --out, or pass --force to overwrite it")
    if (out / STATE_FILE).exists() and not force:
        raise OutputExistsError(f"{out} holds an unfinished run ({STATE_FILE})",
                                f"continue it with `aezoo train --resume {out}`, or pass "
                                "--force to start over")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out} ({exc.strerror})",
                         "choose a writable --out") from None
    try:
        check_writable(out)
    except UsageError:
        for p in created:  # leave no trace of a run that never started
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    for stale in (STATE_FILE, LAST_FILE, BEST_FILE):  # --force: a new run, not a resumable mix
        (out / stale).unlink(missing_ok=True)
    return created


def check_writable(directory: Path) -> None:
    """Write and remove a probe file. ``os.access`` says yes to root even on a read-only
    mount, and only a real write notices a full disk: fail now, not after an hour."""
    probe = directory / f".aezoo-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"aezoo")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise UsageError(f"output directory {directory} is not writable ({exc.strerror})",
                         "choose a writable --out with free space") from None


@dataclass
class RunResult:
    spec: RunSpec
    out_dir: Path
    model: Autoencoder
    history: list[EpochResult]
    rank: int = 0
    stop_reason: str | None = None

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


def fit_spec(spec: RunSpec, data: ArrayDataset, follow_data: bool = True) -> RunSpec:
    """The model's input shape follows the data, unless the user fixed it (``follow_data``
    False): then a mismatch is an error, not a silent change."""
    if tuple(spec.model.input_shape) == data.shape:
        return spec
    if not follow_data:
        want, got = ("x".join(map(str, s)) for s in (spec.model.input_shape, data.shape))
        raise ShapeError(f"model.input_shape is {want} but dataset {data.name} has {got} images",
                         "drop model.input_shape (it follows the data), or convert the data "
                         "with --channels / --image-size")
    model = resolve_model(spec.model.model_copy(update={"input_shape": data.shape}))
    return spec.model_copy(update={"model": model})


def run_callbacks(spec: TrainSpec, out: Path, extra: Iterable[Any] = ()) -> list[Any]:
    """The standard callbacks of a run dir, then ``extra`` (e.g. progress), checkpointer last
    (so the state it saves includes the other callbacks' state for this epoch)."""
    callbacks: list[Any] = [MetricsWriter(out / "metrics.jsonl", out / "metrics.csv")]
    if spec.images:
        callbacks.append(ImageWriter(out))
    if spec.patience is not None:
        callbacks.append(EarlyStopping(spec.patience, spec.min_delta))
    callbacks.extend(load_callback(name, out) for name in spec.callbacks)
    callbacks.extend(extra)
    callbacks.append(Checkpointer(out, spec.checkpoint_every))
    return callbacks


def _write_spec(spec: RunSpec, out: Path) -> None:
    atomic_write(out / RUN_FILE, (spec.model_dump_json(indent=2) + "\n").encode())


def train(spec: RunSpec, out: Path | None = None, *, force: bool = False,
          callbacks: Iterable[Any] = (), follow_data: bool = True) -> RunResult:
    """Train ``spec`` from scratch into ``out`` (see the module docstring for the files).

    The model's input shape follows the data unless ``follow_data`` is False.

    Under torchrun every rank calls this; rank 0 alone writes files.
    """
    dist, device = distributed.setup(spec.train.device)
    try:
        check_switches(spec.train, device)
        out_name = str(out) if out is not None else str(default_out_dir(spec))
        out = Path(distributed.broadcast_text(out_name, dist, device))
        created = distributed.on_main(lambda: prepare_out_dir(out, force), dist, device)
        try:
            return _execute(spec, out, callbacks, dist, state=None, follow_data=follow_data)
        except BaseException:
            for p in created or ():  # a run that failed before writing anything leaves no trace
                with contextlib.suppress(OSError):
                    p.rmdir()  # only ever removes an empty directory
            raise
    finally:
        distributed.shutdown(dist)


def resume(run_dir: Path, overrides: Mapping[str, Any] | None = None, *,
           callbacks: Iterable[Any] = ()) -> RunResult:
    """Continue the run in ``run_dir`` from its ``state.safetensors``.

    ``overrides`` may change the train settings in ``RESUMABLE`` (e.g. more ``epochs``,
    a lower ``lr`` after a divergence); with none, the result equals an uninterrupted run.
    """
    from aezoo.state import read_info

    run_dir = Path(run_dir)
    spec = read_run_spec(run_dir)
    overrides = dict(overrides or {})
    if "callbacks" in overrides:  # added to the run's own
        overrides["callbacks"] = list(dict.fromkeys([*spec.train.callbacks,
                                                     *overrides["callbacks"]]))
    fixed = sorted(set(overrides) - set(RESUMABLE))
    if fixed:
        raise UsageError(f"{', '.join(fixed)} cannot change when resuming",
                         f"resume as is, or start a new run; changeable: {', '.join(RESUMABLE)}")
    train_spec = validate(TrainSpec, {**spec.train.model_dump(), **overrides}, "train")
    spec = spec.model_copy(update={"train": train_spec})
    state = run_dir / STATE_FILE
    if not state.exists():
        raise UsageError(f"{run_dir} has no {STATE_FILE}: the run stopped before its "
                         "first checkpoint", "start it again (with --force)")
    info = read_info(state)
    if info["epoch"] > spec.train.epochs:
        raise UsageError(f"{run_dir} has already finished all {spec.train.epochs} epochs",
                         f"pass --epochs N (N > {spec.train.epochs}) to train further")
    if info.get("stopped") and not {"epochs", "patience"} & set(overrides):
        raise UsageError(f"{run_dir} has finished: {info['stopped']}",
                         "pass a larger --patience (or --epochs) to train it further")
    dist, device = distributed.setup(spec.train.device)
    try:
        check_switches(spec.train, device)
        # Probe now (before data loads); run.json is rewritten once the state has loaded,
        # so a resume refused for a bad state leaves the run dir exactly as it was.
        distributed.on_main(lambda: check_writable(run_dir), dist, device)
        return _execute(spec, run_dir, callbacks, dist, state=state)
    finally:
        distributed.shutdown(dist)


def check_switches(spec: TrainSpec, device: torch.device) -> None:
    """Fail on a precision the device cannot run before any file or data is touched."""
    from aezoo.trainer import autocast_dtype

    autocast_dtype(spec.precision, device)


def read_run_spec(run_dir: Path) -> RunSpec:
    """The RunSpec saved in ``run_dir/run.json``."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory", "give the --out of a run")
    path = run_dir / RUN_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {RUN_FILE}: not a run directory",
                         "give the --out directory of an aezoo train run") from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {path} ({reason.splitlines()[0][:200]})",
                         "restore run.json") from None
    try:
        spec: RunSpec = validate(RunSpec, raw)
    except SpecError as exc:
        raise UsageError(f"{path} is not a valid run spec ({exc.problem})",
                         "restore run.json") from None
    return spec


def _execute(spec: RunSpec, out: Path, callbacks: Iterable[Any], dist: distributed.Dist,
             state: Path | None, follow_data: bool = True) -> RunResult:
    from aezoo.trainer import Trainer, TrainingError, TrainingInterrupted

    data = load_dataset(spec.data)
    spec = fit_spec(spec, data, follow_data)
    torch.manual_seed(spec.train.seed)  # the init is part of the run: seed it
    model = from_spec(spec.model)
    trainer = Trainer(model, data, spec.train, run_callbacks(spec.train, out, callbacks),
                      dist=dist)
    if state is not None:
        trainer.load_state(state)
    if dist.is_main:
        _write_spec(spec, out)
    try:
        history = trainer.fit()
    except (TrainingError, TrainingInterrupted) as exc:  # name the real run directory
        error = type(exc)(exc.problem, (exc.fix or "").replace("RUN_DIR", str(out)))
        error.exit_code = exc.exit_code
        raise error from None
    if dist.is_main:
        save(trainer.model, out / MODEL_FILE)
    return RunResult(spec, out, trainer.model, history, dist.rank, trainer.stop_reason)

"""The run directory: every file name in it, finding a model in it, creating and reading it.

A run directory holds ``run.json`` (the resolved RunSpec), ``metrics.jsonl`` and
``metrics.csv`` (one row per epoch), ``last.safetensors``, ``best.safetensors`` (lowest
val_loss), ``state.safetensors`` (everything ``--resume`` needs), ``images/`` (a
reconstruction grid per epoch) and, once training has finished, ``model.safetensors``.
No other module spells these names.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path

from aezoo._io import atomic_write, probe_writable
from aezoo.errors import CheckpointError, OutputExistsError, SpecError, UsageError, summary
from aezoo.specs import DataSpec, RunSpec, validate

MODEL_FILE = "model.safetensors"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
STATE_FILE = "state.safetensors"
RUN_FILE = "run.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
IMAGES_DIR = "images"
TENSORBOARD_DIR = "tensorboard"


def default_out_dir(spec: RunSpec) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.model.variant or spec.model.encoder.name}-{stamp}"


def check_writable(directory: Path) -> None:
    """Fail now, not after an hour of training, if ``directory`` cannot take a write."""
    try:
        probe_writable(directory)
    except OSError as exc:
        raise UsageError(f"output directory {directory} is not writable ({exc.strerror})",
                         "choose a writable --out with free space") from None


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


def write_run_spec(spec: RunSpec, out: Path) -> None:
    atomic_write(out / RUN_FILE, (spec.model_dump_json(indent=2) + "\n").encode())


def read_run_spec(run_dir: Path) -> RunSpec:
    """The RunSpec saved in ``run_dir/run.json``; anything wrong with it is a UsageError."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory", "give the --out of a run")
    path = run_dir / RUN_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {RUN_FILE}: not a run directory",
                         "give the --out directory of an aezoo train run") from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else summary(
            exc, with_type=False, limit=200)
        raise UsageError(f"cannot read {path} ({reason})", "restore run.json") from None
    try:
        spec: RunSpec = validate(RunSpec, raw)
    except SpecError as exc:
        raise UsageError(f"{path} is not a valid run spec ({exc.problem})",
                         "restore run.json") from None
    return spec


def data_spec_beside(model_file: Path, data: str | None) -> DataSpec:
    """The dataset to evaluate ``model_file`` on: ``data`` if given, else the run's own (from
    a readable, valid ``run.json`` beside it), else the default dataset."""
    if data:
        return DataSpec(name=data)
    if (model_file.parent / RUN_FILE).exists():
        with contextlib.suppress(UsageError):
            return read_run_spec(model_file.parent).data
    return DataSpec()


def model_path(target: Path) -> Path:
    """MODEL as given: a file, or a run directory's final (else latest) checkpoint."""
    if not target.is_dir():
        return target
    for name in (MODEL_FILE, LAST_FILE):
        if (target / name).exists():
            return target / name
    raise CheckpointError(f"{target} holds no {MODEL_FILE} or {LAST_FILE}",
                          "give a model file or the directory of a training run")

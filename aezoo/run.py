"""A training run end to end: output dir, data, model, trainer, files. No printing."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from aezoo.callbacks import Callback, EpochResult, MetricsWriter
from aezoo.checkpoint import atomic_write, save
from aezoo.config import resolve_model
from aezoo.data import ArrayDataset, load_dataset
from aezoo.errors import OutputExistsError, UsageError
from aezoo.model import Autoencoder, from_spec
from aezoo.specs import RunSpec

MODEL_FILE = "model.safetensors"


def default_out_dir(spec: RunSpec) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.model.variant or spec.model.encoder.name}-{stamp}"


def prepare_out_dir(out: Path, force: bool) -> None:
    """Refuse to clobber a saved model, and fail now (not after training) if unwritable."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a directory", "choose another --out")
    if (out / MODEL_FILE).exists() and not force:
        raise OutputExistsError(f"{out / MODEL_FILE} already exists",
                                "choose another --out, or pass --force to overwrite it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out} ({exc.strerror})",
                         "choose a writable --out") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"output directory {out} is not writable", "choose a writable --out")


@dataclass
class RunResult:
    spec: RunSpec
    out_dir: Path
    model: Autoencoder
    history: list[EpochResult]

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


def fit_spec(spec: RunSpec, data: ArrayDataset) -> RunSpec:
    """The model's input shape follows the data."""
    if tuple(spec.model.input_shape) == data.shape:
        return spec
    model = resolve_model(spec.model.model_copy(update={"input_shape": data.shape}))
    return spec.model_copy(update={"model": model})


def train(spec: RunSpec, out: Path | None = None, *, force: bool = False,
          callbacks: Iterable[Callback] = ()) -> RunResult:
    """Train ``spec`` and write model.safetensors, metrics.jsonl and run.json into ``out``."""
    from aezoo.trainer import Trainer

    out = Path(out) if out is not None else default_out_dir(spec)
    prepare_out_dir(out, force)
    data = load_dataset(spec.data)
    spec = fit_spec(spec, data)
    torch.manual_seed(spec.train.seed)  # the init is part of the run: seed it
    model = from_spec(spec.model)
    trainer = Trainer(model, data, spec.train,
                      [MetricsWriter(out / "metrics.jsonl"), *callbacks])
    atomic_write(out / "run.json", (spec.model_dump_json(indent=2) + "\n").encode())
    history = trainer.fit()
    save(trainer.model, out / MODEL_FILE)
    return RunResult(spec, out, trainer.model, history)

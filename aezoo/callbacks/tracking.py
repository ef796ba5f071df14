"""What an experiment tracker records of a run, whichever tracker (``mlflow``, ``wandb``):
the resolved run spec as params, every per-epoch value with the epoch as step, the final
evaluation metrics, the run's files as artifacts; and the tracker's run id in the training
state, so ``--resume`` continues the same tracker run. Rank 0 only (the default)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.callbacks.pruning import epoch_values
from aezoo.epochs import finite
from aezoo.errors import UsageError
from aezoo.rundir import (
    BEST_FILE,
    CURVES_FILE,
    IMAGES_DIR,
    LAST_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    RUN_FILE,
    STATUS_FILE,
    TRIAL_FILE,
    epoch_image,
)
from aezoo.training.hooks import Callback, EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


class Tracker(Callback):
    """The shared part; a subclass opens, logs to and closes its tracker's run."""

    state_key: str | None = None  # set by each subclass: the run id is resumed with it
    package = ""  # set by each subclass: also its callback's and its aezoo extra's name
    module = ""  # the module of the package it uses (default: the package): self.lib

    def __init__(self, out_dir: str | Path) -> None:
        try:  # imported here, when asked for: fail before any data is loaded
            self.lib: Any = importlib.import_module(self.module or self.package)
        except ImportError:
            raise UsageError(f"the {self.package} callback needs the {self.package} package",
                             f"pip install 'aezoo[{self.package}]'") from None
        self.out = Path(out_dir)
        self.run_id: str | None = None

    # -- what a subclass implements ----------------------------------------------------
    def open(self, params: dict[str, str], resumed: bool) -> str:
        raise NotImplementedError

    def log_values(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_final(self, values: dict[str, float]) -> None:
        raise NotImplementedError

    def log_files(self, files: list[Path]) -> None:
        raise NotImplementedError

    def close(self, outcome: str) -> None:
        raise NotImplementedError

    # -- the hooks ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")

    def params(self) -> dict[str, str]:
        """The run spec (``run.json``) as dotted keys, with a sweep trial's number."""
        from aezoo.records import flatten

        spec = json.loads((self.out / RUN_FILE).read_text(encoding="utf-8"))
        out = {k: v if isinstance(v, str) else json.dumps(v)
               for k, v in flatten(spec).items()}
        if (self.out / TRIAL_FILE).is_file():
            out["sweep.trial"] = str(json.loads((self.out / TRIAL_FILE).read_text())["trial"])
        return out

    def on_train_start(self, trainer: Trainer) -> None:
        resumed = self.run_id is not None
        self.run_id = self.open(self.params(), resumed)
        for result in trainer.history:  # a tracker run of a run older than the tracker
            if not resumed:
                self.log_values(finite_values(epoch_values(result)), result.epoch)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        self.log_values(finite_values(epoch_values(result)), result.epoch)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.run_id is None:
            return
        outcome = str(trainer.outcome)
        try:
            if outcome in ("completed", "stopped"):
                self.log_final(final_metrics(trainer))
            trainer.files.drain()  # the pictures handed to the writer thread are in place
            self.log_files(run_files(self.out, trainer))
        finally:
            self.close(outcome)


def finite_values(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if finite(v)}


def final_metrics(trainer: Trainer) -> dict[str, float]:
    """What ``aezoo eval`` reports, on the run's validation split, as ``eval_NAME``."""
    import torch

    from aezoo.evaluation import evaluate

    images = trainer.val_images
    if not isinstance(images, torch.Tensor) or len(images) == 0:
        return {}  # streamed validation data: `aezoo eval RUN` measures it
    with trainer.averaged():
        result = evaluate(trainer.model, images, memory_format=trainer.memory_format)
    return {f"eval_{k}": v for k, v in finite_values(
        {k: v for k, v in result.as_dict().items() if isinstance(v, (int, float))}).items()}


def run_files(out: Path, trainer: Trainer) -> list[Path]:
    """The model (``last.safetensors`` equals the final ``model.safetensors``), the best
    checkpoint, the spec, the metrics, the curves and the last reconstructions."""
    names = [LAST_FILE, BEST_FILE, RUN_FILE, METRICS_JSONL, METRICS_CSV, STATUS_FILE,
             f"{IMAGES_DIR}/{CURVES_FILE}"]
    if trainer.history:
        names.append(f"{IMAGES_DIR}/{epoch_image(trainer.history[-1].epoch)}")
    return [out / n for n in names if (out / n).is_file()]

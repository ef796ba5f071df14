"""What an experiment tracker records of a run, whichever tracker (``mlflow``, ``wandb``):
the resolved run spec as params, every per-epoch value with the epoch as step, the final
evaluation metrics, the run's files as artifacts; and the tracker's run id in the training
state, so ``--resume`` continues the same tracker run. Rank 0 only (the default)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo import rundir
from aezoo.epochs import EpochResult, finite
from aezoo.errors import UsageError
from aezoo.records import flatten
from aezoo.training.hooks import Callback

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer


def needs(extra: str, module: str = "") -> Any:
    """``module`` (default: the package ``extra``), imported when the callback is made, so
    a missing extra fails before any data is loaded."""
    try:
        return importlib.import_module(module or extra)
    except ImportError:
        raise UsageError(f"the {extra} callback needs the {extra} package",
                         f"pip install 'aezoo[{extra}]'") from None


class Tracker(Callback):
    """The shared part; a subclass opens, logs to and closes its tracker's run."""

    state_key: str | None = None  # set by each subclass: the run id is resumed with it

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.run_id: str | None = None

    def open(self, params: dict[str, str], resumed: bool) -> str: raise NotImplementedError
    def log_values(self, values: dict[str, float], step: int) -> None: raise NotImplementedError
    def log_final(self, values: dict[str, float]) -> None: raise NotImplementedError
    def log_files(self, files: list[Path]) -> None: raise NotImplementedError
    def close(self, outcome: str) -> None: raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")

    def on_train_start(self, trainer: Trainer) -> None:
        resumed = self.run_id is not None
        self.run_id = self.open(spec_params(self.out), resumed)
        if not resumed:  # a tracker run of a run older than the tracker gets its epochs
            for result in trainer.history:
                self.on_epoch_end(trainer, result)

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        values = result.row()
        step = values.pop("epoch")
        self.log_values(finite_values(values), step)

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


def spec_params(out: Path) -> dict[str, str]:
    """The run spec (``run.json``) as dotted keys, with a sweep trial's number."""
    spec = json.loads((out / rundir.RUN_FILE).read_text(encoding="utf-8"))
    params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in flatten(spec).items()}
    if (out / rundir.TRIAL_FILE).is_file():
        params["sweep.trial"] = str(json.loads((out / rundir.TRIAL_FILE).read_text())["trial"])
    return params


def final_metrics(trainer: Trainer) -> dict[str, float]:
    """What ``aezoo eval`` reports, on the run's validation split, as ``eval_NAME``."""
    import torch

    from aezoo.evaluation import evaluate

    images = trainer.val_images
    if not isinstance(images, torch.Tensor) or len(images) == 0:
        return {}  # streamed validation data: `aezoo eval RUN` measures it
    with trainer.averaged():
        result = evaluate(trainer.model, images, memory_format=trainer.memory_format)
    return {f"eval_{k}": v for k, v in finite_values(result.as_dict()).items()}


def run_files(out: Path, trainer: Trainer) -> list[Path]:
    """The model (``last.safetensors`` equals the final ``model.safetensors``), the best
    checkpoint, the spec, the metrics, the curves and the last reconstructions."""
    names = [rundir.LAST_FILE, rundir.BEST_FILE, rundir.RUN_FILE, rundir.METRICS_JSONL,
             rundir.METRICS_CSV, rundir.STATUS_FILE, f"{rundir.IMAGES_DIR}/{rundir.CURVES_FILE}"]
    if trainer.history:
        names.append(f"{rundir.IMAGES_DIR}/{rundir.epoch_image(trainer.history[-1].epoch)}")
    return [out / n for n in names if (out / n).is_file()]

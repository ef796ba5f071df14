"""Weights & Biases tracking (the optional ``wandb`` extra): ``aezoo train --callback wandb``.

Project, entity and mode come from W&B's own environment variables: ``WANDB_PROJECT``
(default ``aezoo``), ``WANDB_ENTITY``, ``WANDB_MODE`` (``offline`` writes only to
``RUN/wandb/``; ``wandb sync`` uploads it later), ``WANDB_API_KEY``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aezoo_trackers.tracking import Tracker, needs


class WandbLogger(Tracker):
    """One W&B run per aezoo run (the same one again on ``--resume``), files in ``RUN/wandb/``."""

    state_key = "wandb"
    run: Any = None

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(out_dir)
        self.wandb = needs("wandb")

    def open(self, params: dict[str, str], resumed: bool) -> str:
        self.run = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT", "aezoo"), dir=str(self.out),
            name=self.out.name, id=self.run_id, resume="allow" if self.run_id else None,
            config=params, allow_val_change=True, reinit="create_new")
        return str(self.run.id)

    def log_values(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_final(self, values: dict[str, float]) -> None:
        self.run.summary.update(values)

    def log_files(self, files: list[Path]) -> None:
        artifact = self.wandb.Artifact(f"run-{self.run.id}", type="model")
        for path in files:
            artifact.add_file(str(path), name=str(path.relative_to(self.out)))
        self.run.log_artifact(artifact)

    def close(self, outcome: str) -> None:
        self.run.finish(exit_code=0 if outcome in ("completed", "stopped") else 1)

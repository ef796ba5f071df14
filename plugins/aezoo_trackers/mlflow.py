"""MLflow tracking (the optional ``mlflow`` extra): ``aezoo train --callback mlflow``.

The tracking store and experiment come from MLflow's own environment variables:
``MLFLOW_TRACKING_URI`` (default ``./mlruns``), ``MLFLOW_EXPERIMENT_NAME`` or
``MLFLOW_EXPERIMENT_ID`` (default: the Default experiment).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aezoo.rundir import IMAGES_DIR
from aezoo_trackers.tracking import Tracker, needs

_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED"}


class MlflowLogger(Tracker):
    """One MLflow run per aezoo run (the same one again on ``--resume``)."""

    state_key = "mlflow"

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(out_dir)
        self.client: Any = needs("mlflow", "mlflow.tracking").MlflowClient()

    def _experiment(self) -> str:
        if os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if not name:
            return "0"
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def open(self, params: dict[str, str], resumed: bool) -> str:
        from mlflow.entities import Param

        if resumed and self.run_id:
            self.client.update_run(self.run_id, status="RUNNING")
            known = self.client.get_run(self.run_id).data.params
            params = {k: v for k, v in params.items() if k not in known}  # immutable there
            run_id = self.run_id
        else:
            run_id = self.client.create_run(
                self._experiment(), run_name=self.out.name,
                tags={"aezoo.run_dir": str(self.out.absolute())}).info.run_id
        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=items[i:i + 100])
        return str(run_id)

    def log_values(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in values.items()])

    def log_final(self, values: dict[str, float]) -> None:
        self.log_values(values, 0)

    def log_files(self, files: list[Path]) -> None:
        for path in files:
            where = IMAGES_DIR if path.parent.name == IMAGES_DIR else None
            self.client.log_artifact(self.run_id, str(path), artifact_path=where)

    def close(self, outcome: str) -> None:
        self.client.set_terminated(self.run_id, status=_STATUS.get(outcome, "FAILED"))

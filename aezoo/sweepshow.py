"""``aezoo sweep show``: a sweep's best trial, its trials, and files to act on.

Writes into the sweep directory: ``best.toml`` (the best trial's complete run spec, a file
``aezoo train --config`` takes), ``history.png`` (optimisation history) and
``importances.png`` (parameter importances; both need matplotlib, optional).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aezoo._io import atomic_write
from aezoo.errors import AezooError, UsageError, summary
from aezoo.rundir import read_run_spec
from aezoo.sweep import ATTR, joined, open_storage, read_sweep, trial_state

BEST_SPEC = "best.toml"
HISTORY_PICTURE = "history.png"
IMPORTANCE_PICTURE = "importances.png"


@dataclass
class SweepReport:
    out: Path
    study: str
    storage: str
    metric: str
    direction: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)  # what -> path written
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sweep": str(self.out), "study": self.study, "storage": self.storage,
                "metric": self.metric, "direction": self.direction, "best": self.best,
                "counts": self.counts, "trials": self.trials, "files": self.files,
                "notes": self.notes}


def _row(t: Any, resumed: set[int]) -> dict[str, Any]:
    state = trial_state(t, resumed)
    seconds = None
    if t.datetime_start and t.datetime_complete:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    if value is None and t.intermediate_values:  # a pruned trial: its last report
        value = t.intermediate_values[max(t.intermediate_values)]
    return {"number": t.number, "state": state, "value": value,
            "epochs": len(t.intermediate_values) or t.user_attrs.get(ATTR + "epochs"),
            "params": {k: _decoded(v) for k, v in t.params.items()}, "seconds": seconds,
            "run_dir": t.user_attrs.get(ATTR + "run_dir"),
            "error": t.user_attrs.get(ATTR + "error")}


def _decoded(value: Any) -> Any:
    """A choice is stored as its JSON text (Optuna's choices must be scalars)."""
    import json

    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def show_sweep(out: str | Path, pictures: bool = True) -> SweepReport:
    """The report of the sweep in ``out``; writes the best spec and the pictures there."""
    optuna = __import__("aezoo.sweep", fromlist=["import_optuna"]).import_optuna()
    out = Path(out)
    record = read_sweep(out)
    spec = joined(out)
    storage = open_storage(str(record.get("storage")))
    name = str(record.get("study"))
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception as exc:  # KeyError: no such study
        raise AezooError(f"cannot load study {name} from {record.get('storage')} "
                         f"({summary(exc, limit=200)})", "check the sweep's storage") from None
    trials = study.get_trials(deepcopy=False)
    resumed = {t.user_attrs.get(ATTR + "resumes") for t in trials}
    report = SweepReport(out, name, str(record.get("storage")), spec.metric, spec.goal)
    report.trials = [_row(t, resumed) for t in trials]
    for row in report.trials:
        report.counts[row["state"]] = report.counts.get(row["state"], 0) + 1
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        report.best = _row(best, resumed)
        _write_best_spec(report, out)
    if pictures:
        _pictures(study, out, report, len(complete))
    return report


def _write_best_spec(report: SweepReport, out: Path) -> None:
    from aezoo.schema import spec_text

    assert report.best is not None
    run_dir = report.best.get("run_dir")
    try:
        spec = read_run_spec(Path(str(run_dir)))
        text = spec_text(spec, "toml")
    except (AezooError, OSError) as exc:
        report.notes.append(f"no {BEST_SPEC}: cannot read the best trial's run spec "
                            f"({summary(exc, with_type=False, limit=150)})")
        return
    path = out / BEST_SPEC
    atomic_write(path, text.encode())
    report.files["best spec"] = str(path)


def _pictures(study: Any, out: Path, report: SweepReport, complete: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from optuna.visualization import matplotlib as plots
    except ImportError:
        report.notes.append("no pictures: optuna's plots need matplotlib "
                            "(pip install matplotlib)")
        return
    import warnings

    import matplotlib.pyplot as plt

    wanted: list[tuple[str, str, Any]] = [
        ("history", HISTORY_PICTURE, plots.plot_optimization_history)]
    if complete >= 2 and len(study.best_trial.params) >= 1:
        wanted.append(("importances", IMPORTANCE_PICTURE, plots.plot_param_importances))
    else:
        report.notes.append("no importances yet: they need 2 completed trials")
    for what, name, plot in wanted:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks these plots experimental
                axes = plot(study)
            figure: Any = axes.figure
            figure.tight_layout()
            path = out / name
            tmp = path.with_suffix(".tmp.png")
            figure.savefig(tmp, dpi=100)
            plt.close(figure)
            tmp.replace(path)
            report.files[what] = str(path)
        except Exception as exc:  # a plot optuna cannot draw for this study
            report.notes.append(f"no {what} picture ({summary(exc, limit=150)})")


def require_sweep(out: Path) -> None:
    if not (out / "sweep.json").exists():
        raise UsageError(f"{out} is not a sweep directory", "give the --out of `aezoo sweep`")

"""``aezoo sweep show``: a sweep's best trial, its trials, and files to act on.

Writes into the sweep directory: ``best.toml`` (the best trial's complete run spec, a file
``aezoo train --config`` takes), ``history.png`` (optimisation history) and
``importances.png`` (parameter importances, Optuna's), drawn with matplotlib.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aezoo.curves import PALETTE, figure, legend, write_picture
from aezoo.errors import AezooError, summary
from aezoo.fileio import atomic_write
from aezoo.rundir import read_run_spec
from aezoo_sweep.study import ATTR, counts, import_optuna, joined, open_storage, read_sweep, states

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
    best: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # what -> path written
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        return {"sweep": str(fields.pop("out")), **fields}


def _row(t: Any, state: str) -> dict[str, Any]:
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
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def show_sweep(out: str | Path, pictures: bool = True) -> SweepReport:
    """The report of the sweep in ``out``; writes the best spec and the pictures there."""
    optuna = import_optuna()
    out = Path(out)
    record = read_sweep(out)
    spec = joined(out)
    url, name = str(record.get("storage")), str(record.get("study"))
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception as exc:  # KeyError: no such study
        raise AezooError(f"cannot load study {name} from {url} ({summary(exc, limit=200)})",
                         "check the sweep's storage") from None
    trials = study.get_trials(deepcopy=False)
    found = states(trials)
    report = SweepReport(out, name, url, spec.metric, spec.goal, counts=counts(trials),
                         trials=[_row(t, s) for t, s in zip(trials, found, strict=True)])
    if "complete" in found:
        report.best = _row(study.best_trial, "complete")
        _write_best_spec(report, out)
    if pictures:
        _pictures(study, out, report, found.count("complete"))
    return report


def _write_best_spec(report: SweepReport, out: Path) -> None:
    from aezoo.schema import spec_text

    assert report.best is not None
    try:
        text = spec_text(read_run_spec(Path(str(report.best.get("run_dir")))), "toml")
    except (AezooError, OSError) as exc:
        report.notes.append(f"no {BEST_SPEC}: cannot read the best trial's run spec "
                            f"({summary(exc, with_type=False, limit=150)})")
        return
    atomic_write(out / BEST_SPEC, text.encode())
    report.files["best spec"] = str(out / BEST_SPEC)


def _pictures(study: Any, out: Path, report: SweepReport, complete: int) -> None:
    wanted: list[tuple[str, str, Any]] = [("history", HISTORY_PICTURE, _history)]
    if complete >= 2 and len(study.best_trial.params) >= 1:
        wanted.append(("importances", IMPORTANCE_PICTURE, _importances))
    else:
        report.notes.append("no importances yet: they need 2 completed trials")
    for what, name, draw in wanted:
        try:
            report.files[what] = str(write_picture(out / name, draw(study, report)))
        except Exception as exc:  # a picture optuna cannot compute for this study
            report.notes.append(f"no {what} picture ({summary(exc, limit=150)})")


def _history(study: Any, report: SweepReport) -> Any:
    """Each finished trial's value, and the best so far."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = figure()
    done = [(r["number"], r["value"]) for r in report.trials
            if r["state"] == "complete" and r["value"] is not None]
    best = min if report.direction == "minimize" else max
    so_far = [best(v for _, v in done[:i + 1]) for i in range(len(done))]
    ax.plot([n for n, _ in done], [v for _, v in done], "o", color=PALETTE[0],
            label=report.metric)
    ax.plot([n for n, _ in done], so_far, color=PALETTE[3], label="best so far",
            drawstyle="steps-post")
    ax.set(title=f"optimisation history ({report.direction})", xlabel="trial",
           ylabel=report.metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend(fig, ax.get_legend_handles_labels()[0])
    return fig


def _importances(study: Any, report: SweepReport) -> Any:
    """Optuna's parameter importances (fANOVA), most important on top."""
    from optuna.importance import get_param_importances

    importances = get_param_importances(study)
    fig, (ax,) = figure(height=200 + 40 * len(importances))
    names = list(importances)[::-1]
    bars = ax.barh(names, [importances[n] for n in names], color=PALETTE[0])
    ax.bar_label(bars, fmt="%.2f", padding=3)
    ax.margins(x=0.1)
    ax.set(title=f"parameter importances for {report.metric}", xlabel="importance")
    return fig
